//! Gradient clipping by the global L2 norm, as PyTorch's `torch.nn.utils.clip_grad_norm_`
//! (timm's `--clip-grad` with `--clip-mode norm`): every gradient is scaled by one factor,
//! so the direction of the whole update is kept.

/// Scales `grads` (all of a step's gradients, any layout) in place so that their joint L2
/// norm is at most `max_norm`, and returns the norm before clipping. As PyTorch, the factor
/// is `max_norm / (norm + 1e-6)`, applied when it is below 1 (so when `norm > max_norm`,
/// up to that 1e-6). The norm is summed in f64, so millions of values lose no precision.
/// A non-finite norm is returned as it is and scales nothing.
pub fn clip_grad_norm(grads: &mut [&mut [f32]], max_norm: f32) -> f32 {
    let sum: f64 = grads.iter().flat_map(|g| g.iter()).map(|&v| f64::from(v) * f64::from(v)).sum();
    let norm = sum.sqrt();
    let coef = f64::from(max_norm) / (norm + 1e-6);
    if norm.is_finite() && coef < 1.0 {
        let coef = coef as f32;
        for g in grads.iter_mut() {
            g.iter_mut().for_each(|v| *v *= coef);
        }
    }
    norm as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_to_the_global_norm() {
        let mut a = vec![3.0f32, 0.0];
        let mut b = vec![4.0f32];
        let norm = clip_grad_norm(&mut [&mut a, &mut b], 1.0);
        assert_eq!(norm, 5.0);
        let scale = (1.0 / (5.0 + 1e-6)) as f32;
        assert_eq!(a, vec![3.0 * scale, 0.0]);
        assert_eq!(b, vec![4.0 * scale]);
        // below the limit: untouched
        let mut c = vec![0.3f32, 0.4];
        assert!((clip_grad_norm(&mut [&mut c], 1.0) - 0.5).abs() < 1e-7);
        assert_eq!(c, vec![0.3, 0.4]);
        // no gradients at all
        assert_eq!(clip_grad_norm(&mut [], 1.0), 0.0);
    }
}
