//! 👍/👎 clicks: a vote is recorded for the person who clicked, on an answer of the tenant the
//! click came from (an answer id from elsewhere is refused), once per person and answer — a
//! second click changes it. The reply is for the person who clicked only.

use super::Gateway;
use crate::brain::TenantKey;
use crate::chat::feedback::{self, VoteButton};
use crate::store::StoreError;

impl Gateway {
    /// Records `user`'s click on `button` in `tenant`; returns what to tell them.
    pub async fn vote(&self, tenant: &TenantKey, button: VoteButton, user: &str) -> String {
        match self.record_vote(tenant, button, user).await {
            Ok(true) => {
                self.metrics.record_vote(button.vote == feedback::Vote::Up);
                feedback::recorded(button.vote)
            }
            Ok(false) => {
                tracing::info!(
                    %tenant,
                    answer = button.answer,
                    "a vote on another tenant's (or no) answer was refused"
                );
                feedback::NOT_HERE.to_string()
            }
            Err(error) => {
                tracing::warn!(%error, "cannot record a vote");
                feedback::NOT_NOW.to_string()
            }
        }
    }

    async fn record_vote(
        &self,
        tenant: &TenantKey,
        button: VoteButton,
        user: &str,
    ) -> Result<bool, StoreError> {
        let Some(tenant) = self.store.find_tenant(tenant).await? else {
            return Ok(false);
        };
        self.store
            .record_vote(tenant, button.answer, user, button.vote.as_i8())
            .await
    }
}
