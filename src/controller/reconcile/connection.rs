//! Executing the connection Secret step (rule 12): remove the Secret an earlier name pointed at
//! if this target still controls it, then listKeys and write the one the spec names, only where
//! it may. Status and conditions follow in `settle`.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use kube::ResourceExt;
use secrecy::ExposeSecret;

use crate::api::TargetStatus;
use crate::azure::{ArmClient, WorkspaceRef};
use crate::controller::error::chain;
use crate::controller::secrets::WriteOutcome;
use crate::controller::settle::{ConnectionResult, ConnectionWrite};
use crate::controller::target::AttachTarget;

use super::Pass;

impl<K: AttachTarget> Pass<'_, K> {
    pub(super) async fn write_connection(
        &self,
        arm: &ArmClient,
        wsr: &WorkspaceRef,
        status: &TargetStatus,
    ) -> ConnectionResult {
        let wanted = self
            .obj
            .common()
            .write_connection_secret_to_ref
            .as_ref()
            .map(|r| r.name.clone());
        let uid = self.obj.uid().unwrap_or_default();
        let mut removed_old = false;
        if let Some(old) = &status.connection_secret_name
            && wanted.as_deref() != Some(old.as_str())
        {
            // Renamed or removed: the old Secret goes, but only if it is still ours.
            match self
                .ctx
                .secrets
                .delete_if_controlled(&self.ns, old, &uid)
                .await
            {
                Ok(deleted) => {
                    if deleted {
                        tracing::info!(secret = %old, "removed the previous connection Secret");
                    }
                    removed_old = true;
                }
                Err(e) => {
                    return ConnectionResult {
                        removed_old,
                        write: ConnectionWrite::Failed(chain(&e)),
                    };
                }
            }
        }
        let write = match wanted {
            None => ConnectionWrite::NotWanted,
            Some(name) => self.write(arm, wsr, status, name).await,
        };
        ConnectionResult { removed_old, write }
    }

    async fn write(
        &self,
        arm: &ArmClient,
        wsr: &WorkspaceRef,
        status: &TargetStatus,
        name: String,
    ) -> ConnectionWrite {
        let keys = match arm.list_keys(wsr, self.compute_name).await {
            Ok(k) => k,
            Err(e) => return ConnectionWrite::Failed(chain(&e)),
        };
        let mut data: BTreeMap<String, ByteString> = self
            .obj
            .connection_data(&keys)
            .into_iter()
            .map(|(k, v)| (k, ByteString(v.expose_secret().as_bytes().to_vec())))
            .collect();
        drop(keys);
        let ids = [
            ("computeName", Some(self.compute_name.to_owned())),
            ("computeId", status.compute_id.clone()),
            ("computeType", Some(K::compute_type().as_str().to_owned())),
            ("workspaceId", Some(wsr.arm_id())),
            ("resourceId", self.obj.underlying().resource_id()),
        ];
        for (k, v) in ids {
            if let Some(v) = v {
                data.insert(k.to_owned(), ByteString(v.into_bytes()));
            }
        }
        let Some(owner) = self.obj.controller_owner_ref(&()) else {
            return ConnectionWrite::Failed("the target has no uid yet".to_owned());
        };
        match self
            .ctx
            .secrets
            .write_connection(&self.ns, &name, owner, data)
            .await
        {
            Ok(WriteOutcome::Written) => ConnectionWrite::Written(name),
            Ok(WriteOutcome::Conflict(why)) => ConnectionWrite::Conflict(format!(
                "the compute is attached, but spec.writeConnectionSecretToRef names Secret \
                 {name:?}, which already exists and is not this target's ({why}); nothing was \
                 written to it: choose another name, or delete that Secret if it is not needed"
            )),
            Err(e) => ConnectionWrite::Failed(chain(&e)),
        }
    }
}
