//! Following Azure operations: polling a long-running attach or detach, and detaching (rule 1, 6).

use super::*;

impl<K: AttachTarget> Pass<'_, K> {
    pub(super) async fn poll(
        &mut self,
        arm: &ArmClient,
        wsr: &WorkspaceRef,
        op: PendingOperation,
        desired_hash: &str,
    ) -> Result<Step, ArmError> {
        if let Some(at) = &op.next_poll_at {
            let wait = at.0.duration_since(now().0);
            if wait.is_positive() {
                // Woken early by an unrelated event (e.g. our own status write): no ARM call.
                return Ok(Step::after(
                    Duration::try_from(wait).unwrap_or(DEFAULT_POLL),
                ));
            }
        }
        let status = match arm.poll_operation(&op.url).await {
            Ok(s) => s,
            Err(ArmError::NotFound { .. }) => {
                // The operation record expired: forget it and plan again from the LIST.
                self.status.operation = None;
                self.ctx.cache.invalidate(wsr).await;
                return Ok(Step::after(Duration::from_secs(1)));
            }
            Err(e) => return Err(e),
        };
        let in_progress_reason = match (op.kind, op.reattach) {
            (_, true) => Reason::Reattaching,
            (OperationKind::Attach, false) => Reason::Attaching,
            (OperationKind::Detach, false) => Reason::Detaching,
        };
        match status.status {
            OperationState::Succeeded => {}
            OperationState::Failed | OperationState::Canceled => {
                self.status.operation = None;
                let err = status.error.clone();
                let errors: Vec<ProvisioningError> = err
                    .iter()
                    .map(|e| ProvisioningError {
                        code: e.code.clone().unwrap_or_default(),
                        message: e.message.clone().unwrap_or_default(),
                    })
                    .collect();
                let detail = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.code, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Ok(match op.kind {
                    OperationKind::Attach => {
                        self.status.attached_config_hash = op.config_hash.clone();
                        self.status.rejected_config_hash = op.config_hash.clone();
                        self.status.provisioning_state = Some(status.status.as_str().to_owned());
                        self.status.provisioning_errors = errors;
                        self.report(
                            Reason::ProvisioningFailed,
                            format!("Azure could not attach the compute: {detail}"),
                        )
                        .await
                    }
                    OperationKind::Detach => {
                        let step = self
                            .report(Reason::AzureError, format!("the detach failed: {detail}"))
                            .await;
                        Step::after(step.requeue.min(Duration::from_secs(60)))
                    }
                });
            }
            _ => {
                self.set_ready(
                    in_progress_reason,
                    format!("waiting for Azure ({:?} in progress)", op.kind),
                );
                let delay = poll_delay(status.retry_after);
                if let Some(pending) = self.status.operation.as_mut() {
                    pending.next_poll_at = Some(after(delay));
                }
                return Ok(Step::after(delay));
            }
        }
        // Succeeded.
        self.status.operation = None;
        match op.kind {
            OperationKind::Attach => {
                let hash = op
                    .config_hash
                    .clone()
                    .unwrap_or_else(|| desired_hash.to_owned());
                self.attached(wsr, hash, "Succeeded").await;
                Ok(self.after_attached(arm, wsr).await)
            }
            OperationKind::Detach => {
                self.ctx.cache.remove(wsr, &self.compute_name).await;
                self.status.provisioning_state = None;
                if op.reattach && !self.deleting {
                    return Ok(self.detached_for_reattach());
                }
                self.detached().await;
                Ok(Step::done())
            }
        }
    }

    /// The first half of a re-attach is done. The second is the next pass's: the plan sees the
    /// compute absent with an out-of-date `attachedConfigHash` and attaches (cause Reattach), so
    /// no effect calls another.
    fn detached_for_reattach(&mut self) -> Step {
        self.set_ready(
            Reason::Reattaching,
            "detached (underlyingResourceAction=Detach); attaching again with the new settings",
        );
        Step::after(Duration::ZERO)
    }

    pub(super) async fn detached(&mut self) {
        // Forget the attachment in status too: a reconcile that still sees the finalizer
        // (stale cache) then releases instead of detaching again.
        self.status.compute_id = None;
        self.status.attached_config_hash = None;
        self.status.connection_secret_hash = None;
        self.status.connection_secret_name = None;
        self.ctx
            .event(
                self.obj,
                EventReason::Detached,
                format!(
                    "detached compute {:?} (underlyingResourceAction=Detach)",
                    self.compute_name
                ),
            )
            .await;
    }

    pub(super) async fn detach(
        &mut self,
        arm: &ArmClient,
        wsr: &WorkspaceRef,
        reattach: bool,
    ) -> Result<Step, ArmError> {
        let outcome = arm.detach_compute(wsr, &self.compute_name).await?;
        if reattach {
            self.ctx
                .event(
                    self.obj,
                    EventReason::Reattaching,
                    "a setting Azure cannot update in place changed: detaching, then attaching again".to_owned(),
                )
                .await;
        }
        match outcome {
            DetachOutcome::Done
            | DetachOutcome::Absent
            | DetachOutcome::InProgress {
                operation_url: None,
                ..
            } => {
                self.ctx.cache.remove(wsr, &self.compute_name).await;
                self.status.operation = None;
                self.status.provisioning_state = None;
                if reattach {
                    return Ok(self.detached_for_reattach());
                }
                self.detached().await;
                Ok(Step::done())
            }
            DetachOutcome::InProgress {
                operation_url: Some(url),
                retry_after,
            } => {
                self.status.operation = Some(PendingOperation {
                    kind: OperationKind::Detach,
                    url,
                    reattach,
                    config_hash: None,
                    started_at: Some(now()),
                    next_poll_at: Some(after(poll_delay(retry_after))),
                });
                self.status.provisioning_state = Some("Deleting".to_owned());
                let reason = if reattach {
                    Reason::Reattaching
                } else {
                    Reason::Detaching
                };
                self.set_ready(
                    reason,
                    "Azure accepted the detach (underlyingResourceAction=Detach)".to_owned(),
                );
                Ok(Step::after(poll_delay(retry_after)))
            }
        }
    }
}
