//! What the scenario creates: three Azure workspaces and one underlying resource per target in
//! the emulator; three namespaces, each with three MLWorkspaces (one per Azure workspace) and
//! one credential Secret per kind; N targets cycling through kind × namespace × workspace; and
//! the special cases (a foreign compute under a wanted name, a duplicate claim, the targets
//! whose sshPort, Secret or compute is changed mid-way).

use azureml_attach::api::{
    BatchTarget, DataLakeAnalyticsTarget, DatabricksTarget, HdInsightTarget, RemoteVmTarget,
};
use azureml_emulator::config::Workspace;
use azureml_emulator::{EmulatorConfig, WorldResource};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

use crate::harness::{CLIENT_SECRET, SUB};

/// Azure workspaces in the emulator (besides the default `prod-workspace`).
pub const AZURE_WORKSPACES: [&str; 3] = ["chaos-ws-1", "chaos-ws-2", "chaos-ws-3"];
/// MLWorkspace objects in every namespace; the i-th names `AZURE_WORKSPACES[i]`.
pub const ML_WORKSPACES: [&str; 3] = ["ws-a", "ws-b", "ws-c"];
/// Namespaces with targets.
pub const NAMESPACES: usize = 3;
/// The sshPort that the port-change targets move to.
pub const NEW_SSH_PORT: i64 = 2222;
/// The password of the rotated VM Secret (namespace 0) after the rotation.
pub const ROTATED_VM_PASSWORD: &str = "Chaos-VM-Rotated-Passw0rd";
/// The password the foreign compute was attached with (the operator never sees it).
pub const FOREIGN_PASSWORD: &str = "Foreign-Owner-Passw0rd";
/// Namespace whose VM Secret is rotated.
pub const ROTATED_NS: usize = 0;

pub fn vm_password(ns: usize) -> String {
    format!("Chaos-VM-Passw0rd-n{ns}")
}
pub fn hdi_password(ns: usize) -> String {
    format!("Chaos-HDI-Passw0rd-n{ns}")
}
pub fn dbx_token(ns: usize) -> String {
    format!("dapi-chaos-n{ns}-0123456789abcdef")
}

/// Every secret value the scenario uses: none may show up in logs, events, status or URLs.
pub fn secret_values() -> Vec<String> {
    let mut v = vec![
        CLIENT_SECRET.to_owned(),
        ROTATED_VM_PASSWORD.to_owned(),
        FOREIGN_PASSWORD.to_owned(),
    ];
    for ns in 0..NAMESPACES {
        v.extend([vm_password(ns), hdi_password(ns), dbx_token(ns)]);
    }
    v
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Vm,
    Hdi,
    Batch,
    Dbx,
    Adla,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Vm, Kind::Hdi, Kind::Batch, Kind::Dbx, Kind::Adla];

    pub fn crd_kind(self) -> &'static str {
        match self {
            Kind::Vm => "RemoteVmTarget",
            Kind::Hdi => "HdInsightTarget",
            Kind::Batch => "BatchTarget",
            Kind::Dbx => "DatabricksTarget",
            Kind::Adla => "DataLakeAnalyticsTarget",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Kind::Vm => "vm",
            Kind::Hdi => "hdi",
            Kind::Batch => "bat",
            Kind::Dbx => "dbx",
            Kind::Adla => "adla",
        }
    }

    fn provider(self) -> &'static str {
        match self {
            Kind::Vm => "Microsoft.Compute/virtualMachines",
            Kind::Hdi => "Microsoft.HDInsight/clusters",
            Kind::Batch => "Microsoft.Batch/batchAccounts",
            Kind::Dbx => "Microsoft.Databricks/workspaces",
            Kind::Adla => "Microsoft.DataLakeAnalytics/accounts",
        }
    }

    pub fn api_resource(self) -> ApiResource {
        match self {
            Kind::Vm => ApiResource::erase::<RemoteVmTarget>(&()),
            Kind::Hdi => ApiResource::erase::<HdInsightTarget>(&()),
            Kind::Batch => ApiResource::erase::<BatchTarget>(&()),
            Kind::Dbx => ApiResource::erase::<DatabricksTarget>(&()),
            Kind::Adla => ApiResource::erase::<DataLakeAnalyticsTarget>(&()),
        }
    }

    fn secret(self) -> Option<&'static str> {
        match self {
            Kind::Vm => Some("vm-ssh"),
            Kind::Hdi => Some("hdi-ssh"),
            Kind::Dbx => Some("dbx-token"),
            Kind::Batch | Kind::Adla => None,
        }
    }
}

/// Where a target must end up once the faults stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Attached,
    /// Its compute name is held by the foreign compute (rule 3).
    NameTaken,
    /// An older target in another namespace claims its resource (rule 4).
    Duplicate,
}

impl Expect {
    pub fn reason(self) -> &'static str {
        match self {
            Expect::Attached => "Attached",
            Expect::NameTaken => "ComputeNameTaken",
            Expect::Duplicate => "DuplicateAttachment",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Target {
    pub kind: Kind,
    pub ns: usize,
    pub ws: usize,
    pub name: String,
    pub resource_id: String,
    pub address: String,
    pub ssh_port: i64,
    pub connection_secret: Option<String>,
    pub expect: Expect,
}

impl Target {
    fn nth(i: usize) -> Target {
        let kind = Kind::ALL[i % Kind::ALL.len()];
        let ns = i % NAMESPACES;
        let ws = (i / NAMESPACES) % AZURE_WORKSPACES.len();
        let name = format!("{}{i:04}", kind.prefix());
        let resource_id = format!(
            "/subscriptions/{SUB}/resourceGroups/ml-rg/providers/{}/chaos-{name}",
            kind.provider()
        );
        let address = match kind {
            Kind::Dbx => format!("adb-{i}.7.azuredatabricks.net"),
            Kind::Hdi => format!("chaos-{name}-ssh.azurehdinsight.net"),
            _ => format!("10.{ns}.{}.{}", i / 250, i % 250 + 1),
        };
        let connection_secret =
            (matches!(kind, Kind::Vm | Kind::Hdi) && i % 10 < 2).then(|| format!("{name}-conn"));
        Target {
            kind,
            ns,
            ws,
            name,
            resource_id,
            address,
            ssh_port: 22,
            connection_secret,
            expect: Expect::Attached,
        }
    }

    pub fn azure_workspace(&self) -> &'static str {
        AZURE_WORKSPACES[self.ws]
    }

    /// The object, for server-side apply.
    pub fn manifest(&self, namespace: &str) -> Value {
        let mut spec = json!({
            "workspaceRef": {"name": ML_WORKSPACES[self.ws]},
            "resourceId": self.resource_id,
        });
        let s = spec.as_object_mut().expect("spec is an object");
        match self.kind {
            Kind::Vm | Kind::Hdi => {
                if self.kind == Kind::Hdi {
                    s.insert("address".into(), json!(self.address));
                }
                s.insert("sshPort".into(), json!(self.ssh_port));
                s.insert(
                    "credentials".into(),
                    json!({"secretRef": {"name": self.kind.secret()}, "passwordKey": "password"}),
                );
            }
            Kind::Dbx => {
                s.insert("workspaceUrl".into(), json!(self.address));
                s.insert(
                    "accessTokenSecretRef".into(),
                    json!({"name": self.kind.secret(), "key": "token"}),
                );
            }
            Kind::Batch | Kind::Adla => {}
        }
        if let Some(c) = &self.connection_secret {
            s.insert("writeConnectionSecretToRef".into(), json!({"name": c}));
        }
        json!({
            "apiVersion": "attach.azureml.io/v1alpha1",
            "kind": self.kind.crd_kind(),
            "metadata": {"name": self.name, "namespace": namespace},
            "spec": spec,
        })
    }

    /// The underlying resource, accepting the namespace's credentials.
    pub fn world_resource(&self, vm_pw: &str) -> WorldResource {
        let mut r = WorldResource {
            id: self.resource_id.clone(),
            ..WorldResource::default()
        };
        match self.kind {
            Kind::Vm => {
                r.address = Some(self.address.clone());
                r.vm_size = Some("Standard_D2s_v3".into());
                r.username = Some("azureuser".into());
                r.password = Some(vm_pw.to_owned());
            }
            Kind::Hdi => {
                r.address = Some(self.address.clone());
                r.username = Some("sshuser".into());
                r.password = Some(hdi_password(self.ns));
            }
            Kind::Dbx => {
                r.workspace_url = Some(self.address.clone());
                r.access_token = Some(dbx_token(self.ns));
            }
            Kind::Batch | Kind::Adla => {}
        }
        r
    }
}

/// A compute attached outside Kubernetes under the name a target wants.
pub struct Foreign {
    pub workspace: &'static str,
    pub name: String,
    pub resource: WorldResource,
    pub body: Value,
}

pub struct Fixture {
    /// Every target created at the start (the duplicate claim is separate).
    pub targets: Vec<Target>,
    /// Created mid-way in another namespace, on the resource of `targets[dup_of]`.
    pub duplicate: Target,
    pub dup_of: usize,
    pub foreign: Foreign,
    /// Indexes of targets whose sshPort changes mid-way.
    pub port_changes: Vec<usize>,
    /// Indexes of targets whose compute is removed behind the operator's back.
    pub drift: Vec<usize>,
    /// Indexes of targets using the rotated Secret.
    pub rotated: Vec<usize>,
}

impl Fixture {
    pub fn new(n: usize) -> Fixture {
        let mut targets: Vec<Target> = (0..n).map(Target::nth).collect();
        let first = |targets: &[Target], kind: Kind, ns: usize| {
            targets
                .iter()
                .position(|t| t.kind == kind && t.ns == ns)
                .expect("N is large enough for every kind in every namespace")
        };
        let clash = first(&targets, Kind::Vm, 1);
        targets[clash].expect = Expect::NameTaken;
        let dup_of = first(&targets, Kind::Batch, 0);
        let original = &targets[dup_of];
        let duplicate = Target {
            ns: 2,
            name: "dupclaim".into(),
            expect: Expect::Duplicate,
            connection_secret: None,
            ..original.clone()
        };
        let port_changes: Vec<usize> = (0..n)
            .filter(|&i| targets[i].kind == Kind::Vm && targets[i].ns == 2)
            .take((n / 100).max(1))
            .collect();
        let drift: Vec<usize> = (0..n)
            .filter(|&i| {
                matches!(targets[i].kind, Kind::Hdi | Kind::Dbx | Kind::Adla) && targets[i].ns != 0
            })
            .take((n / 20).max(3))
            .collect();
        let rotated: Vec<usize> = (0..n)
            .filter(|&i| targets[i].kind == Kind::Vm && targets[i].ns == ROTATED_NS)
            .collect();
        let foreign_id = format!(
            "/subscriptions/{SUB}/resourceGroups/ml-rg/providers/Microsoft.Compute/virtualMachines/foreign-vm"
        );
        let foreign = Foreign {
            workspace: targets[clash].azure_workspace(),
            name: targets[clash].name.clone(),
            resource: WorldResource {
                id: foreign_id.clone(),
                address: Some("20.99.0.1".into()),
                vm_size: Some("Standard_D2s_v3".into()),
                username: Some("owner".into()),
                password: Some(FOREIGN_PASSWORD.into()),
                ..WorldResource::default()
            },
            body: json!({
                "location": "westeurope",
                "properties": {
                    "computeType": "VirtualMachine",
                    "resourceId": foreign_id,
                    "description": "attached by someone else, outside Kubernetes",
                    "properties": {
                        "sshPort": 22,
                        "administratorAccount": {"username": "owner", "password": FOREIGN_PASSWORD}
                    }
                }
            }),
        };
        Fixture {
            targets,
            duplicate,
            dup_of,
            foreign,
            port_changes,
            drift,
            rotated,
        }
    }

    /// The emulator's world: the default one plus three workspaces and a resource per target.
    pub fn emulator_config(&self) -> EmulatorConfig {
        let mut c = EmulatorConfig::default();
        for name in AZURE_WORKSPACES {
            c.workspaces.push(Workspace {
                subscription_id: SUB.into(),
                resource_group: "ml-rg".into(),
                name: name.into(),
                location: "westeurope".into(),
            });
        }
        c.resources.extend(
            self.targets
                .iter()
                .map(|t| t.world_resource(&vm_password(t.ns))),
        );
        c.resources.push(self.foreign.resource.clone());
        c
    }

    /// Namespace-level objects: the MLWorkspaces and the credential Secrets.
    pub fn namespace_manifests(ns_index: usize, namespace: &str) -> Vec<Value> {
        let secret = |name: &str, data: Value| {
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace,
                             "labels": {"attach.azureml.io/credential": "true"}},
                "stringData": data,
            })
        };
        let mut v = vec![
            secret("chaos-sp", json!({"clientSecret": CLIENT_SECRET})),
            secret(
                "vm-ssh",
                json!({"username": "azureuser", "password": vm_password(ns_index)}),
            ),
            secret(
                "hdi-ssh",
                json!({"username": "sshuser", "password": hdi_password(ns_index)}),
            ),
            secret("dbx-token", json!({"token": dbx_token(ns_index)})),
        ];
        for (ml, azure) in ML_WORKSPACES.iter().zip(AZURE_WORKSPACES) {
            v.push(json!({
                "apiVersion": "attach.azureml.io/v1alpha1", "kind": "MLWorkspace",
                "metadata": {"name": ml, "namespace": namespace},
                "spec": {
                    "subscriptionId": SUB, "resourceGroup": "ml-rg", "workspaceName": azure,
                    "credential": {"type": "ClientSecret", "clientSecret": {
                        "tenantId": "11111111-1111-1111-1111-111111111111",
                        "clientId": "22222222-2222-2222-2222-222222222222",
                        "secretRef": {"name": "chaos-sp", "key": "clientSecret"}}}
                }
            }));
        }
        v
    }
}
