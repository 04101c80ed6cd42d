//! The connection Secret a target asks for (rule 12).

use super::*;

impl<K: AttachTarget> Pass<'_, K> {
    /// Writes the connection Secret once per attached configuration (listKeys + ids), only
    /// where it may (rule 12), and removes the one an earlier name pointed at if this target
    /// still controls it.
    pub(super) async fn sync_connection_secret(
        &mut self,
        arm: &ArmClient,
        wsr: &WorkspaceRef,
    ) -> Result<ConnectionSecret, Error> {
        let wanted = self
            .obj
            .common()
            .write_connection_secret_to_ref
            .as_ref()
            .map(|r| r.name.clone());
        let uid = self.obj.uid().unwrap_or_default();
        if let Some(old) = self.status.connection_secret_name.clone()
            && wanted.as_deref() != Some(old.as_str())
        {
            // Renamed or removed: the old Secret goes, but only if it is still ours.
            if self
                .ctx
                .secrets
                .delete_if_controlled(&self.ns, &old, &uid)
                .await
                .map_err(Error::Secret)?
            {
                tracing::info!(secret = %old, "removed the previous connection Secret");
            }
            self.status.connection_secret_name = None;
            self.status.connection_secret_hash = None;
        }
        let Some(name) = wanted else {
            return Ok(ConnectionSecret::Done);
        };
        if self.status.connection_secret_hash.is_some()
            && self.status.connection_secret_hash == self.status.attached_config_hash
            && self.status.connection_secret_name.as_deref() == Some(name.as_str())
            && self
                .ctx
                .secrets
                .connection_in_place(&self.ns, &name, &uid)
                .await
                .map_err(Error::Secret)?
        {
            return Ok(ConnectionSecret::Done);
        }
        let keys = arm
            .list_keys(wsr, &self.compute_name)
            .await
            .map_err(Error::Arm)?;
        let mut data: BTreeMap<String, ByteString> = self
            .obj
            .connection_data(&keys)
            .into_iter()
            .map(|(k, v)| (k, ByteString(v.expose_secret().as_bytes().to_vec())))
            .collect();
        drop(keys);
        let ids = [
            ("computeName", Some(self.compute_name.clone())),
            ("computeId", self.status.compute_id.clone()),
            ("computeType", Some(K::compute_type().as_str().to_owned())),
            ("workspaceId", Some(wsr.arm_id())),
            ("resourceId", self.obj.underlying().resource_id()),
        ];
        for (k, v) in ids {
            if let Some(v) = v {
                data.insert(k.to_owned(), ByteString(v.into_bytes()));
            }
        }
        let owner = self
            .obj
            .controller_owner_ref(&())
            .ok_or(Error::MissingNamespace)?;
        match self
            .ctx
            .secrets
            .write_connection(&self.ns, &name, owner, data)
            .await
            .map_err(Error::Secret)?
        {
            WriteOutcome::Written => {
                self.status.connection_secret_hash = self.status.attached_config_hash.clone();
                self.status.connection_secret_name = Some(name);
                Ok(ConnectionSecret::Done)
            }
            WriteOutcome::Conflict(why) => Ok(ConnectionSecret::Conflict(format!(
                "the compute is attached, but spec.writeConnectionSecretToRef names Secret \
                 {name:?}, which already exists and is not this target's ({why}); nothing was \
                 written to it: choose another name, or delete that Secret if it is not needed"
            ))),
        }
    }
}
