//! The registry: an explicit static table from timm model name to entry point and
//! pretrained configs, and `create_model("name[.tag]", opts)` on top of it (timm's
//! `_registry.py` and `_factory.py`).

use crate::error::{Result, ZooError};
use crate::model::{Model, ZooOpts};
use crate::pretrained::PretrainedCfg;
use crate::{
    alexnet, byobnet, convnext, cspnet, densenet, dla, dpn, efficientnet, googlenet, hrnet, inception_resnet_v2,
    inception_v3, inception_v4, lenet, mobilenetv3, nasnet, pnasnet, regnet, res2net, resnest, resnet, resnetv2,
    rexnet, selecsls, senet, sknet, tresnet, vgg, vision_transformer, vovnet, xception, xception_aligned,
};
use std::collections::HashMap;
use std::sync::OnceLock;

/// One registered architecture.
pub struct ModelEntry {
    /// timm's name (`resnet50`).
    pub name: &'static str,
    /// The module it lives in (`convnet_zoo::resnet`); [`family`](Self::family) is its last part.
    pub module: &'static str,
    /// Builds it.
    pub build: fn(ZooOpts) -> Result<Model>,
    /// Pretrained configs, the default first.
    pub cfgs: &'static [PretrainedCfg],
}

/// Sizes of a registered model with its default classifier and input size. Generated from
/// the code into `model_stats.tsv` (never typed by hand) so that listing models costs
/// nothing; `tests/registry.rs` rebuilds every model and checks each row, and checks them
/// against timm's own numbers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelStats {
    /// Parameters (trainable and not, without batch-norm buffers), as timm counts them.
    pub params: usize,
    /// Tensors in the state dict (buffers included).
    pub tensors: usize,
    /// Multiply-accumulates of one image at the default input size, in billions
    /// (convolutions and linear layers, timm's GMACs).
    pub gmacs: f64,
}

impl ModelEntry {
    /// The default pretrained config.
    pub fn default_cfg(&self) -> &'static PretrainedCfg {
        &self.cfgs[0]
    }
    /// `name.tag` of each config.
    pub fn tagged_names(&self) -> Vec<String> {
        self.cfgs.iter().map(|c| format!("{}.{}", self.name, c.tag)).collect()
    }
    /// The family file it lives in (`resnet`).
    pub fn family(&self) -> &'static str {
        self.module.rsplit("::").next().unwrap_or(self.module)
    }
    /// Its row of the generated stats table (`None` only while a new model's row is not yet
    /// generated; the registry test fails then).
    pub fn stats(&self) -> Option<ModelStats> {
        stats_table().get(self.name).copied()
    }
}

impl std::fmt::Debug for ModelEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelEntry").field("name", &self.name).field("family", &self.family()).finish()
    }
}

/// `register!(resnet50, RESNET50)`: the entry of the builder `resnet50` (also the timm name)
/// with the pretrained configs `RESNET50`, in the family file that calls it.
macro_rules! register {
    ($name:ident, $cfgs:expr) => {
        $crate::registry::ModelEntry { name: stringify!($name), module: module_path!(), build: $name, cfgs: $cfgs }
    };
}
pub(crate) use register;

/// Every family's variants, each table kept beside its family's code.
static FAMILIES: &[&[ModelEntry]] = &[
    efficientnet::MODELS,
    mobilenetv3::MODELS,
    resnet::MODELS,
    senet::MODELS,
    regnet::MODELS,
    rexnet::MODELS,
    resnest::MODELS,
    res2net::MODELS,
    sknet::MODELS,
    vgg::MODELS,
    densenet::MODELS,
    dpn::MODELS,
    cspnet::MODELS,
    inception_v3::MODELS,
    inception_v4::MODELS,
    inception_resnet_v2::MODELS,
    xception::MODELS,
    xception_aligned::MODELS,
    nasnet::MODELS,
    pnasnet::MODELS,
    byobnet::MODELS,
    vovnet::MODELS,
    selecsls::MODELS,
    googlenet::MODELS,
    alexnet::MODELS,
    lenet::MODELS,
    convnext::MODELS,
    vision_transformer::MODELS,
    dla::MODELS,
    resnetv2::MODELS,
    tresnet::MODELS,
    hrnet::MODELS,
];

/// Every registered model, family by family.
pub fn models() -> impl Iterator<Item = &'static ModelEntry> {
    FAMILIES.iter().flat_map(|f| f.iter())
}

/// The generated table: `name, params, tensors, gmacs` per registered model.
pub const STATS_TSV: &str = include_str!("model_stats.tsv");

fn stats_table() -> &'static HashMap<&'static str, ModelStats> {
    static TABLE: OnceLock<HashMap<&'static str, ModelStats>> = OnceLock::new();
    TABLE.get_or_init(|| parse_stats(STATS_TSV))
}

/// Parses the stats table; malformed rows are skipped (the registry test rejects them).
pub fn parse_stats(text: &'static str) -> HashMap<&'static str, ModelStats> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let [name, params, tensors, gmacs] = f[..] else { return None };
            Some((
                name,
                ModelStats { params: params.parse().ok()?, tensors: tensors.parse().ok()?, gmacs: gmacs.parse().ok()? },
            ))
        })
        .collect()
}

/// One row of the stats table, as the registry test writes it.
pub fn stats_row(name: &str, s: &ModelStats) -> String {
    format!("{name}\t{}\t{}\t{:.6}", s.params, s.tensors, s.gmacs)
}

/// The entry of `arch` (no tag).
pub fn entry(arch: &str) -> Option<&'static ModelEntry> {
    models().find(|e| e.name == arch)
}

/// Splits `resnet50.a1_in1k` into `("resnet50", Some("a1_in1k"))`.
pub fn split_model_name(name: &str) -> (&str, Option<&str>) {
    match name.split_once('.') {
        Some((a, t)) if !t.is_empty() => (a, Some(t)),
        Some((a, _)) => (a, None),
        None => (name, None),
    }
}

/// The pretrained config of `arch` with `tag` (default: the first).
pub fn pretrained_cfg(arch: &str, tag: Option<&str>) -> Result<PretrainedCfg> {
    let e = entry(arch).ok_or_else(|| unknown(arch))?;
    match tag {
        None => Ok(e.default_cfg().clone()),
        Some(t) => e.cfgs.iter().find(|c| c.tag == t).cloned().ok_or_else(|| ZooError::UnknownTag {
            arch: arch.to_string(),
            tag: t.to_string(),
            known: e.cfgs.iter().map(|c| c.tag.to_string()).collect(),
        }),
    }
}

/// timm's `create_model`: `name` is `arch` or `arch.tag`; a tag in `opts` is overridden by
/// one in the name.
pub fn create_model(name: &str, mut opts: ZooOpts) -> Result<Model> {
    let (arch, tag) = split_model_name(name.trim());
    let e = entry(arch).ok_or_else(|| unknown(arch))?;
    if let Some(t) = tag {
        opts.tag = Some(t.to_string());
    }
    (e.build)(opts)
}

/// Registered names matching a shell-style pattern (`*` any run, `?` one character;
/// a pattern without wildcards matches as a substring), in table order.
pub fn list_models(pattern: &str) -> Vec<&'static ModelEntry> {
    let p = pattern.trim();
    models()
        .filter(|e| {
            if p.is_empty() {
                true
            } else if p.contains(['*', '?']) {
                wildcard(p.as_bytes(), e.name.as_bytes())
            } else {
                e.name.contains(p)
            }
        })
        .collect()
}

fn wildcard(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => wildcard(&p[1..], s) || (!s.is_empty() && wildcard(p, &s[1..])),
        (Some(b'?'), Some(_)) => wildcard(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => wildcard(&p[1..], &s[1..]),
        _ => false,
    }
}

fn unknown(name: &str) -> ZooError {
    ZooError::UnknownModel { name: name.to_string(), suggestions: suggestions(name) }
}

/// Registered names closest to `name` (edit distance, then shared prefix), at most five.
pub fn suggestions(name: &str) -> Vec<String> {
    let lower = name.to_ascii_lowercase();
    let mut scored: Vec<(usize, &str)> = models().map(|e| (levenshtein(&lower, e.name), e.name)).collect();
    scored.sort();
    let limit = (lower.len() / 2).max(3);
    let mut out: Vec<String> = scored.iter().filter(|(d, _)| *d <= limit).take(5).map(|(_, n)| n.to_string()).collect();
    if out.is_empty() {
        out = models()
            .filter(|e| e.name.contains(&lower) || lower.contains(e.name))
            .take(5)
            .map(|e| e.name.to_string())
            .collect();
    }
    out
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_and_match() {
        assert_eq!(split_model_name("resnet50.a1_in1k"), ("resnet50", Some("a1_in1k")));
        assert_eq!(split_model_name("resnet50"), ("resnet50", None));
        let r: Vec<&str> = list_models("resnet??").iter().map(|e| e.name).collect();
        assert_eq!(r, ["resnet18", "resnet26", "resnet34", "resnet50"]);
        assert!(list_models("vgg1?_bn").iter().all(|e| e.name.ends_with("_bn")));
        assert_eq!(list_models("lite0").len(), 2);
    }

    #[test]
    fn unknown_names_suggest_close_ones() {
        let err = create_model("resnet5", ZooOpts::default()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("did you mean") && msg.contains("resnet50"), "{msg}");
        let err = create_model("resnet50.nope", ZooOpts::default()).unwrap_err();
        assert!(matches!(err, ZooError::UnknownTag { .. }), "{err}");
    }

    #[test]
    fn registered_names_are_unique_and_have_configs() {
        let all: Vec<&ModelEntry> = models().collect();
        for (i, e) in all.iter().enumerate() {
            assert!(!e.cfgs.is_empty(), "{}", e.name);
            assert!(all[i + 1..].iter().all(|o| o.name != e.name), "{} twice", e.name);
            assert_eq!(e.family(), e.module.trim_start_matches("convnet_zoo::"), "{}", e.name);
        }
    }
}
