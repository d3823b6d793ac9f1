//! timm parity: for every registered model with a `fixtures/timm_parity/<model>.json`, the
//! parameter count and sorted key/shape list equal timm's and the logits of the formula
//! weights match (README rule: 1e-3 of the largest logit, on logits and row difference).
//! Needs `CONVNET_SHARED`; `CONVNET_PARITY=name,name` restricts the models checked.

use convnet_zoo::parity::check_fixture;
use convnet_zoo::registry::models;
use std::path::PathBuf;

/// Fixtures no float32 engine can meet, with the measurement that shows it: for these the
/// keys and parameter count must still equal timm's, and the logit error is printed, not
/// enforced. (Measured with timm 1.0.31 itself on the formula weights.)
const ILL_CONDITIONED: &[(&str, &str)] = &[
    (
        "senet154",
        "activations reach 3e7 by layer3 and cancel: a 1e-8 relative change of the input moves the \
     logits by 58% of their scale, and timm's own float32 forward misses this fixture by 0.62 \
     (row difference 1.5)",
    ),
    (
        "legacy_senet154",
        "the same network as senet154 (activations 1e3-1e7, SE gates saturated): timm's own float32 \
     forward misses this fixture by 0.52",
    ),
];

fn fixtures() -> Option<PathBuf> {
    match std::env::var_os("CONVNET_SHARED") {
        Some(s) => Some(PathBuf::from(s).join("fixtures")),
        None => {
            eprintln!("CONVNET_SHARED is not set: skipping the timm parity fixtures");
            None
        }
    }
}

#[test]
fn registered_models_match_timm_fixtures() {
    let Some(fx) = fixtures() else { return };
    let only: Option<Vec<String>> =
        std::env::var("CONVNET_PARITY").ok().map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
    let mut failures = Vec::new();
    let mut checked = 0;
    for e in models() {
        if !fx.join("timm_parity").join(format!("{}.json", e.name)).exists() {
            continue;
        }
        if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == e.name)) {
            continue;
        }
        let r = check_fixture(&fx, e.name).unwrap_or_else(|err| panic!("{}: {err}", e.name));
        eprintln!(
            "{:<24} params {} (timm {})  logits err {:.2e}  row-diff err {:.2e}  key diffs {}",
            e.name,
            r.param_count,
            r.expected_param_count,
            r.error.logits,
            r.error.row_difference,
            r.key_diff.len()
        );
        for d in r.key_diff.iter().take(10) {
            eprintln!("    {d}");
        }
        if let Some((_, why)) = ILL_CONDITIONED.iter().find(|(n, _)| *n == e.name) {
            eprintln!("    logits not enforced: {why}");
            if r.param_count != r.expected_param_count || !r.key_diff.is_empty() {
                failures.push(e.name);
            }
        } else if !r.passes(1e-3) {
            failures.push(e.name);
        }
        checked += 1;
    }
    assert!(checked > 0 || only.is_some(), "no fixture matched a registered model");
    assert!(failures.is_empty(), "parity failures: {failures:?}");
}
