//! The fault table (issue 15): time added per invocation (`platform.runtimeDone` →
//! `/event/next`) while Kinesis fails in each way [`KinesisFault::ALL`] names, at one
//! invocation every 2 s (sparse) and 5 per second (busy), beside a healthy Kinesis; what
//! was in flight at `/event/next`, and whether the extension exited cleanly before the
//! SHUTDOWN deadline. Short sessions (10 sparse, 30 busy invocations): the table takes
//! about four minutes.

use serde_json::{json, Value};

use kte_sandbox::{Faults, Pace, Report, SandboxConfig, Workload};
use kte_test_support::KinesisFault;

use super::{summary, Out, Session};

const SPARSE_INVOCATIONS: usize = 10;
const BUSY_INVOCATIONS: usize = 30;

/// The target the issue sets for every fault.
const TARGET: &str = "under each fault: time added mean ≤ 5 ms, max ≤ 100 ms; clean exit before the SHUTDOWN deadline";

fn workload(rate: f64, invocations: usize) -> Workload {
    Workload {
        invocations,
        pace: Pace::Rate(rate),
        ..Workload::default()
    }
}

/// `mean X ms, max Y ms`.
fn added(r: &Report) -> String {
    let p = &r.runtime_done_to_next;
    format!("mean {:.1} ms, max {:.1} ms", p.mean_ms, p.max_ms)
}

/// Invocations with something in flight at `/event/next`; how SHUTDOWN ended.
fn in_flight_and_exit(r: &Report) -> String {
    let f = &r.in_flight_at_next;
    let sh = &r.shutdown;
    let exit = if sh.killed {
        "killed at the deadline".to_owned()
    } else if !sh.before_deadline {
        "exited after the deadline".to_owned()
    } else if sh.exit_code != Some(0) {
        format!("exit code {:?}", sh.exit_code)
    } else {
        format!(
            "clean, {:.0} ms before the deadline",
            sh.margin_ms.unwrap_or(f64::NAN)
        )
    };
    format!("{} of {}; {exit}", f.invocations, f.observed)
}

/// One row of sessions: sparse and busy under `fault` (`None`: healthy).
fn sessions(base: &SandboxConfig, fault: Option<KinesisFault>) -> Result<(Report, Report), String> {
    let name = fault.map_or("healthy".to_owned(), |f| f.to_string());
    let run = |rate: f64, n: usize, what: &str| {
        let mut s = Session::of(workload(rate, n)).faults(Faults {
            kinesis: fault,
            ..Faults::default()
        });
        // Under a fault the events are lost (counted at SHUTDOWN): that is not what this
        // table measures.
        s.expect_loss = fault.is_some();
        s.judge = fault.is_none();
        s.run(base, &format!("faults: Kinesis {name}, {what}"))
    };
    let sparse = run(0.5, SPARSE_INVOCATIONS, "1 invocation / 2 s")?;
    let busy = run(5.0, BUSY_INVOCATIONS, "5 invocations / s")?;
    Ok((sparse, busy))
}

pub(super) fn faults(base: &SandboxConfig, out: &mut Out) -> Result<(), String> {
    let mut table = format!(
        "Time added per invocation (runtimeDone → `/event/next`) by what Kinesis does; in flight at `/event/next` (invocations); SHUTDOWN. Sparse: 1 invocation / 2 s, {SPARSE_INVOCATIONS} invocations; busy: 5 / s, {BUSY_INVOCATIONS} invocations; 5 lines of 200 B, 5 ms handler. Target: {TARGET}.\n\n\
         | Kinesis is… | sparse: added | sparse: in flight; exit | busy: added | busy: in flight; exit |\n\
         |---|---|---|---|---|\n"
    );
    let mut json = serde_json::Map::new();
    let cases = std::iter::once(None).chain(KinesisFault::ALL.into_iter().map(Some));
    for fault in cases {
        let (sparse, busy) = sessions(base, fault)?;
        let label = fault.map_or("healthy".to_owned(), |f| {
            format!("{} (`{f}`)", f.describe())
        });
        table.push_str(&format!(
            "| {label} | {} | {} | {} | {} |\n",
            added(&sparse),
            in_flight_and_exit(&sparse),
            added(&busy),
            in_flight_and_exit(&busy)
        ));
        let key = fault.map_or("healthy".to_owned(), |f| f.to_string());
        let row: Value = json!({
            "sparse": summary(&sparse), "busy": summary(&busy),
            "sparse_in_flight_at_next": sparse.in_flight_at_next,
            "busy_in_flight_at_next": busy.in_flight_at_next,
        });
        json.insert(key, row);
    }
    out.tables.push(table);
    out.json.insert("faults".into(), Value::Object(json));
    Ok(())
}
