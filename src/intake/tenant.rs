//! Tenant isolation mode: which tenant each event of an invocation belongs to.
//!
//! A function in tenant isolation mode is invoked with a tenant id, and Lambda names it in
//! the invocation's `platform.start` and `platform.report` (and in JSON log lines); a Text
//! log line and `platform.runtimeDone` do not carry it. The receiver learns the pair
//! (request id → tenant) here from every event that carries both, and attributes an event to
//! a tenant by the same rules it uses for its request id:
//!
//! - its own `tenantId`, when the record has one;
//! - else the tenant of its own `requestId` (platform events, JSON log lines);
//! - else, for a Text log line, the tenant of the invocation running when it arrived — never
//!   on Lambda Managed Instances, where invocations run concurrently and a line without a
//!   request id cannot be told apart.
//!
//! Events outside any invocation (init, SnapStart restore, shutdown, extension lines between
//! invocations) have no tenant. Lambda dedicates each execution environment to one tenant,
//! so a consumer can still attribute them through `source.environment`.
//!
//! Memory: the [`MAX_TRACKED`] most recently learnt invocations, oldest forgotten first; a
//! pair is not dropped at `platform.report`, because the invocation's last log lines may
//! arrive in a later POST. An id longer than [`MAX_TENANT_ID_BYTES`] is not kept.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Invocations whose tenant is remembered. Default Lambda runs one at a time (two overlap
/// in the telemetry stream); on Managed Instances an environment runs up to
/// `AWS_LAMBDA_MAX_CONCURRENCY` at once, far fewer than this. About 100 bytes each.
pub const MAX_TRACKED: usize = 256;
/// Longest tenant id used (Lambda's `X-Amz-Tenant-Id` is far shorter; the partition key
/// limit is 256 characters).
pub const MAX_TENANT_ID_BYTES: usize = 256;

/// The tenants of recent invocations, by request id.
#[derive(Debug, Default)]
pub struct Tenants {
    by_request: HashMap<Arc<str>, Arc<str>>,
    /// Request ids in the order they were learnt, to forget the oldest.
    order: VecDeque<Arc<str>>,
}

impl Tenants {
    /// Remembers that `request_id` serves `tenant` (ignored when either is unusable).
    pub fn learn(&mut self, request_id: &str, tenant: &str) {
        if tenant.is_empty() || tenant.len() > MAX_TENANT_ID_BYTES || request_id.is_empty() {
            return;
        }
        if let Some(known) = self.by_request.get_mut(request_id) {
            if **known != *tenant {
                *known = Arc::from(tenant);
            }
            return;
        }
        if self.order.len() >= MAX_TRACKED {
            if let Some(oldest) = self.order.pop_front() {
                self.by_request.remove(&oldest);
            }
        }
        let id: Arc<str> = Arc::from(request_id);
        self.by_request.insert(id.clone(), Arc::from(tenant));
        self.order.push_back(id);
    }

    /// The tenant an event belongs to: its own `tenantId`, else that of its own request id,
    /// else that of the invocation it was attributed to (`inferred`).
    pub fn of(
        &self,
        own_tenant: Option<&str>,
        own_request: Option<&str>,
        inferred: Option<&str>,
    ) -> Option<Arc<str>> {
        if let Some(t) = own_tenant.filter(|t| !t.is_empty() && t.len() <= MAX_TENANT_ID_BYTES) {
            return Some(Arc::from(t));
        }
        if self.by_request.is_empty() {
            return None;
        }
        own_request
            .or(inferred)
            .and_then(|id| self.by_request.get(id).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_matched_like_their_request_id() {
        let mut t = Tenants::default();
        t.learn("req-1", "blue");
        t.learn("req-2", "green");
        // (own tenantId, own requestId, inferred request id) -> tenant
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
        );
        let table: [Case; 7] = [
            (Some("red"), Some("req-1"), None, Some("red")),
            (None, Some("req-1"), None, Some("blue")),
            (None, Some("req-2"), Some("req-1"), Some("green")),
            (None, None, Some("req-2"), Some("green")),
            (None, None, None, None),
            (None, Some("req-unknown"), None, None),
            (Some(""), None, Some("req-1"), Some("blue")),
        ];
        for (own_tenant, own_request, inferred, want) in table {
            assert_eq!(
                t.of(own_tenant, own_request, inferred).as_deref(),
                want,
                "{own_tenant:?} {own_request:?} {inferred:?}"
            );
        }
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_is_forgotten_first() {
        let mut t = Tenants::default();
        for i in 0..MAX_TRACKED + 10 {
            t.learn(&format!("req-{i}"), &format!("tenant-{}", i % 4));
        }
        assert_eq!(t.by_request.len(), MAX_TRACKED);
        assert_eq!(t.order.len(), MAX_TRACKED);
        assert_eq!(t.of(None, Some("req-0"), None), None);
        assert_eq!(
            t.of(None, Some(&format!("req-{}", MAX_TRACKED + 9)), None)
                .as_deref(),
            Some("tenant-1")
        );
        // Learning a known pair again neither grows nor evicts.
        t.learn(&format!("req-{}", MAX_TRACKED + 9), "tenant-1");
        assert_eq!(t.order.len(), MAX_TRACKED);
    }

    #[test]
    fn unusable_ids_are_not_kept() {
        let mut t = Tenants::default();
        t.learn("req-1", "");
        t.learn("", "blue");
        t.learn("req-2", &"x".repeat(MAX_TENANT_ID_BYTES + 1));
        assert!(t.by_request.is_empty());
        assert_eq!(
            t.of(Some(&"y".repeat(MAX_TENANT_ID_BYTES + 1)), None, None),
            None
        );
    }
}
