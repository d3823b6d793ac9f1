//! The registry's numbers are generated and checked, never typed by hand:
//! - every registered model, built, has the parameter count, state-dict tensor count and
//!   GMACs of its row in `src/model_stats.tsv` (`CONVNET_BLESS=all` or `=name,name` rewrites
//!   those rows from the built models instead);
//! - those rows and the default pretrained configs equal timm's own (`timm_variants.json`
//!   for 358 names, `timm_zoo.json` for GMACs, within 1 %).

use convnet_zoo::registry::{ModelStats, STATS_TSV, models, parse_stats, stats_row};
use convnet_zoo::{ModelEntry, ZooOpts};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn shared() -> Option<PathBuf> {
    match std::env::var_os("CONVNET_SHARED") {
        Some(s) => Some(PathBuf::from(s)),
        None if std::env::var_os("CONVNET_REQUIRE_FIXTURES").is_some() => {
            panic!("CONVNET_REQUIRE_FIXTURES is set but CONVNET_SHARED is not")
        }
        None => {
            eprintln!("CONVNET_SHARED is not set: skipping the comparison with timm's numbers");
            None
        }
    }
}

fn measure(e: &ModelEntry) -> ModelStats {
    let m = (e.build)(ZooOpts::default()).unwrap_or_else(|err| panic!("{}: {err}", e.name));
    assert_eq!(m.num_classes(), e.default_cfg().num_classes, "{}", e.name);
    ModelStats { params: m.param_count(), tensors: m.params().len(), gmacs: m.gmacs().unwrap() }
}

#[test]
fn stats_table_equals_the_built_models() {
    let table = parse_stats(STATS_TSV);
    let bless = std::env::var("CONVNET_BLESS").ok();
    let blessed = |name: &str| bless.as_deref().is_some_and(|b| b == "all" || b.split(',').any(|n| n.trim() == name));
    let mut rows: BTreeMap<String, ModelStats> = table.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let mut wrong = Vec::new();
    for e in models() {
        let got = measure(e);
        if blessed(e.name) {
            rows.insert(e.name.to_string(), got);
            continue;
        }
        match table.get(e.name) {
            None => wrong.push(format!("{}: no row (run with CONVNET_BLESS={})", e.name, e.name)),
            Some(want) => {
                let gmacs_ok = (got.gmacs - want.gmacs).abs() <= 1e-6 * want.gmacs.max(1.0);
                if got.params != want.params || got.tensors != want.tensors || !gmacs_ok {
                    wrong.push(format!("{}: built {got:?}, table {want:?}", e.name));
                }
            }
        }
    }
    let registered: Vec<&str> = models().map(|e| e.name).collect();
    if bless.is_some() {
        rows.retain(|name, _| registered.contains(&name.as_str()));
        let header: String = STATS_TSV.lines().take_while(|l| l.starts_with('#')).map(|l| format!("{l}\n")).collect();
        let body: String = rows.iter().map(|(n, s)| stats_row(n, s) + "\n").collect();
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/model_stats.tsv");
        std::fs::write(&path, header + &body).unwrap();
        eprintln!("wrote {}", path.display());
    } else {
        for name in table.keys().filter(|n| !registered.contains(n)) {
            wrong.push(format!("{name}: a row for an unregistered model"));
        }
    }
    assert!(wrong.is_empty(), "stats table out of date:\n{}", wrong.join("\n"));
}

#[test]
fn registered_models_equal_timm_variants() {
    let Some(shared) = shared() else { return };
    let path = shared.join("fixtures/timm_variants.json");
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let variants = doc["models"].as_object().unwrap();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for e in models() {
        let Some(v) = variants.get(e.name) else { continue };
        let Some(s) = e.stats() else {
            wrong.push(format!("{}: no stats row", e.name));
            continue;
        };
        let c = e.default_cfg();
        let num = |k: &str| v[k].as_u64().unwrap() as usize;
        let floats = |k: &str| -> Vec<f64> { serde_json::from_value(v[k].clone()).unwrap() };
        let sizes: Vec<usize> = serde_json::from_value(v["input_size"].clone()).unwrap();
        let checks = [
            ("param_count", s.params == num("param_count"), format!("{} vs {}", s.params, v["param_count"])),
            (
                "state_dict_tensors",
                s.tensors == num("state_dict_tensors"),
                format!("{} vs {}", s.tensors, v["state_dict_tensors"]),
            ),
            ("default_tag", c.tag == v["default_tag"].as_str().unwrap(), format!("{} vs {}", c.tag, v["default_tag"])),
            ("num_classes", c.num_classes == num("num_classes"), format!("{} vs {}", c.num_classes, v["num_classes"])),
            ("input_size", c.input_size[..] == sizes[..], format!("{:?} vs {sizes:?}", c.input_size)),
            (
                "crop_pct",
                (c.crop_pct - v["crop_pct"].as_f64().unwrap()).abs() < 1e-9,
                format!("{} vs {}", c.crop_pct, v["crop_pct"]),
            ),
            (
                "interpolation",
                c.interpolation.name() == v["interpolation"].as_str().unwrap(),
                format!("{} vs {}", c.interpolation.name(), v["interpolation"]),
            ),
            ("mean", c.mean.to_vec() == floats("mean"), format!("{:?} vs {}", c.mean, v["mean"])),
            ("std", c.std.to_vec() == floats("std"), format!("{:?} vs {}", c.std, v["std"])),
        ];
        for (what, ok, detail) in checks {
            if !ok {
                wrong.push(format!("{} {what}: ours {detail} (timm)", e.name));
            }
        }
        checked += 1;
    }
    eprintln!("{checked} registered models compared with timm_variants.json");
    assert!(wrong.is_empty(), "differences from timm_variants.json:\n{}", wrong.join("\n"));
    assert!(checked >= 40, "only {checked} registered models are in timm_variants.json");
}

#[test]
fn gmacs_and_configs_equal_timm_zoo() {
    let Some(shared) = shared() else { return };
    let path = shared.join("fixtures/timm_zoo.json");
    let zoo: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut checked = 0;
    for m in zoo["models"].as_array().unwrap() {
        let name = m["timm_name"].as_str().unwrap();
        let Some(e) = convnet_zoo::registry::entry(name) else { continue };
        let s = e.stats().unwrap_or_else(|| panic!("{name}: no stats row"));
        assert_eq!(s.params as u64, m["params"].as_u64().unwrap(), "{name} params");
        let timm = m["gmacs"].as_f64().unwrap();
        assert!((s.gmacs - timm).abs() <= 0.01 * timm, "{name} GMACs {} vs timm {timm}", s.gmacs);
        let cfg = e.default_cfg();
        let test: Option<Vec<usize>> = serde_json::from_value(m["test_input_size"].clone()).unwrap();
        assert_eq!(cfg.test_input_size.map(|t| t.to_vec()), test, "{name} test_input_size");
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} models of timm_zoo.json are registered");
}
