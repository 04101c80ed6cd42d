//! Attaching: the PUT, recording a finished attach, and checking an attached compute (rules 2, 3, 5, 7).

use super::*;

impl<K: AttachTarget> Pass<'_, K> {
    /// Records a finished attach and writes it through to the LIST cache.
    pub(super) async fn attached(&mut self, wsr: &WorkspaceRef, hash: String, state: &str) {
        self.status.attached_config_hash = Some(hash);
        self.status.rejected_config_hash = None;
        self.status.provisioning_state = Some(state.to_owned());
        self.status.provisioning_errors.clear();
        self.status.compute_id = Some(wsr.compute_id(&self.compute_name));
        let compute = synthetic_compute::<K>(self.obj, &self.compute_name, state);
        self.ctx
            .cache
            .upsert(wsr, &self.compute_name, compute)
            .await;
    }

    pub(super) async fn after_attached(&mut self, arm: &ArmClient, wsr: &WorkspaceRef) -> Step {
        // Ready=True only once the connection Secret the spec asks for is written (rule 12).
        match self.sync_connection_secret(arm, wsr).await {
            Ok(ConnectionSecret::Done) => {}
            Ok(ConnectionSecret::Conflict(message)) => {
                return self.report(Reason::ConnectionSecretConflict, message).await;
            }
            Err(e) => {
                let message = format!(
                    "the compute is attached, but the connection Secret could not be written: {}",
                    crate::controller::error::chain(&e)
                );
                let step = self.report(Reason::ConnectionSecretFailed, message).await;
                return Step::after(step.requeue.min(TRANSIENT_RETRY));
            }
        }
        let was_ready = self.old.ready().is_some_and(|c| c.status == "True");
        self.set_ready(
            Reason::Attached,
            format!("compute {:?} is attached and Succeeded", self.compute_name),
        );
        if !was_ready {
            self.ctx
                .event(
                    self.obj,
                    EventReason::Attached,
                    format!("compute {:?} attached", self.compute_name),
                )
                .await;
        }
        Step::after(self.ctx.resync)
    }

    pub(super) async fn attach(
        &mut self,
        arm: &ArmClient,
        wsr: &WorkspaceRef,
        ws: &MLWorkspace,
        cause: AttachCause,
        desired_hash: &str,
        secret_rv: Option<&str>,
    ) -> Result<Step, ArmError> {
        // Rule 10: Secret data is read here, right before the PUT, and dropped after it.
        let secret = match self.obj.secret_name() {
            Some(name) => match self.ctx.secrets.read_credential(&self.ns, name).await {
                Ok(Ok(d)) => Some(d),
                Ok(Err(Credential::NotOptedIn)) => {
                    return Ok(self
                        .report(Reason::SecretNotLabeled, not_opted_in_message(name))
                        .await);
                }
                Ok(Err(_)) => {
                    return Ok(self
                        .report(
                            Reason::SecretNotFound,
                            format!("Secret {name:?} does not exist"),
                        )
                        .await);
                }
                Err(e) => {
                    return Ok(self
                        .report(Reason::AzureError, crate::controller::error::chain(&e))
                        .await);
                }
            },
            None => None,
        };
        let location = ws.status.as_ref().and_then(|s| s.location.clone());
        let body = match attach_body(self.obj, secret.as_ref(), location) {
            Ok(b) => b,
            Err(
                e @ (BuildError::SecretKeyMissing { .. } | BuildError::SecretKeyNotText { .. }),
            ) => {
                return Ok(self.report(Reason::SecretKeyMissing, e.to_string()).await);
            }
            Err(e @ BuildError::InvalidSpec(_)) => {
                return Ok(self.report(Reason::InvalidSpec, e.to_string()).await);
            }
        };
        drop(secret);
        let result = arm.put_compute(wsr, &self.compute_name, &body).await;
        drop(body);
        let lro = match result {
            Ok(l) => l,
            Err(e) if e.kind() == ArmErrorKind::BadRequest => {
                // Permanent for this configuration: remember it so it is not PUT again (rule 11).
                self.status.rejected_config_hash = Some(desired_hash.to_owned());
                let refused_type = K::compute_type() == ComputeType::Batch
                    || e.code()
                        .is_some_and(|c| c.to_ascii_lowercase().contains("computetype"));
                let reason = if refused_type {
                    Reason::ComputeTypeRefused
                } else {
                    Reason::InvalidSpec
                };
                let msg = format!(
                    "Azure refused the attach: {}",
                    crate::controller::error::chain(&e)
                );
                return Ok(self.report(reason, msg).await);
            }
            Err(e) => return Err(e),
        };
        self.status.secret_resource_version = secret_rv.map(str::to_owned);
        let (event, verb) = match cause {
            AttachCause::Initial => (EventReason::Attaching, "attaching"),
            AttachCause::Reattach => (EventReason::Reattaching, "re-attaching after a change"),
            AttachCause::Drift => (
                EventReason::DriftRepaired,
                "re-attaching: the attachment vanished from the workspace",
            ),
        };
        self.ctx
            .event(
                self.obj,
                event,
                format!("{verb}: PUT compute {:?}", self.compute_name),
            )
            .await;
        match lro {
            Lro::Done(resource) => {
                let summary = summarize::<K>(self.obj, &resource);
                self.attached(
                    wsr,
                    desired_hash.to_owned(),
                    summary.provisioning_state.as_deref().unwrap_or("Succeeded"),
                )
                .await;
                self.in_sync(arm, wsr, summary).await
            }
            Lro::InProgress {
                operation_url: Some(url),
                retry_after,
                ..
            } => {
                self.status.operation = Some(PendingOperation {
                    kind: OperationKind::Attach,
                    url,
                    reattach: cause == AttachCause::Reattach,
                    config_hash: Some(desired_hash.to_owned()),
                    started_at: Some(now()),
                    next_poll_at: Some(after(poll_delay(retry_after))),
                });
                self.status.provisioning_state = Some("Creating".to_owned());
                self.status.compute_id = Some(wsr.compute_id(&self.compute_name));
                let reason = if cause == AttachCause::Reattach {
                    Reason::Reattaching
                } else {
                    Reason::Attaching
                };
                self.set_ready(reason, "Azure accepted the attach; provisioning".to_owned());
                Ok(Step::after(poll_delay(retry_after)))
            }
            Lro::InProgress {
                operation_url: None,
                retry_after,
                ..
            } => {
                // No operation URL: follow provisioningState with GETs (in_sync refreshes).
                self.attached(wsr, desired_hash.to_owned(), "Creating")
                    .await;
                self.set_ready(
                    Reason::Attaching,
                    "Azure accepted the attach; provisioning".to_owned(),
                );
                Ok(Step::after(poll_delay(retry_after)))
            }
        }
    }

    pub(super) async fn in_sync(
        &mut self,
        arm: &ArmClient,
        wsr: &WorkspaceRef,
        mut c: ComputeSummary,
    ) -> Result<Step, ArmError> {
        if !c.is_terminal() {
            // The cached view is stale for a compute still provisioning: one GET of it alone.
            match arm.get_compute(wsr, &self.compute_name).await? {
                Some(fresh) => {
                    c = summarize::<K>(self.obj, &fresh);
                    let state = c.provisioning_state.clone().unwrap_or_default();
                    let synthetic = synthetic_compute::<K>(self.obj, &self.compute_name, &state);
                    self.ctx
                        .cache
                        .upsert(wsr, &self.compute_name, synthetic)
                        .await;
                }
                None => {
                    self.ctx.cache.remove(wsr, &self.compute_name).await;
                    return Ok(Step::after(Duration::from_secs(1)));
                }
            }
        }
        self.status.provisioning_state = c.provisioning_state.clone();
        self.status.provisioning_errors = c.errors.clone();
        self.status.compute_id =
            c.id.clone()
                .or_else(|| Some(wsr.compute_id(&self.compute_name)));
        if c.is_failed() {
            let detail = c
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.code, e.message))
                .collect::<Vec<_>>()
                .join("; ");
            return Ok(self
                .report(
                    Reason::ProvisioningFailed,
                    format!(
                        "Azure reports provisioningState {}: {detail}; change the spec or rotate the Secret to retry",
                        c.provisioning_state.as_deref().unwrap_or("Failed")
                    ),
                )
                .await);
        }
        if !c.is_terminal() {
            self.set_ready(
                Reason::Attaching,
                format!(
                    "Azure reports provisioningState {}",
                    c.provisioning_state.as_deref().unwrap_or("")
                ),
            );
            return Ok(Step::after(DEFAULT_POLL));
        }
        Ok(self.after_attached(arm, wsr).await)
    }
}
