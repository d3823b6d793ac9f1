//! Reverse-mode differentiation over the graph that ops record.

use crate::{Result, Tensor, TensorError, TensorId};
use std::collections::{HashMap, HashSet};

/// The backward half of an op: given the op's inputs, its output and the
/// gradient of the loss with respect to that output, returns the gradient for
/// each input (`None` where `needs[i]` is false or the input is not differentiable).
pub trait Backward: Send + Sync {
    /// The op's name, for error messages and debugging.
    fn name(&self) -> &'static str;
    /// Gradients for `inputs`, in order.
    fn backward(&self, inputs: &[Tensor], output: &Tensor, grad: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>>;
}

/// How a tensor was computed: the op and the tensors it read.
pub(crate) struct Node {
    pub op: Box<dyn Backward>,
    pub inputs: Vec<Tensor>,
}

/// Gradients of a scalar with respect to every variable it depends on.
#[derive(Default)]
pub struct Gradients {
    map: HashMap<TensorId, Tensor>,
}

impl Gradients {
    /// The gradient for `var`, if the loss depends on it.
    pub fn get(&self, var: &Tensor) -> Option<&Tensor> {
        self.map.get(&var.id())
    }
    /// Removes and returns the gradient for `var`.
    pub fn take(&mut self, var: &Tensor) -> Option<Tensor> {
        self.map.remove(&var.id())
    }
    /// Number of gradients held.
    pub fn len(&self) -> usize {
        self.map.len()
    }
    /// True when no variable received a gradient.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl Tensor {
    /// Differentiates this tensor (usually a scalar loss) with respect to every
    /// variable in its graph, seeding with ones.
    pub fn backward(&self) -> Result<Gradients> {
        self.backward_with(Tensor::full(self.shape().clone(), 1.0))
    }

    /// Differentiates with an explicit seed gradient of this tensor's shape.
    pub fn backward_with(&self, seed: Tensor) -> Result<Gradients> {
        if !self.requires_grad() {
            return Err(TensorError::NoGradient);
        }
        if seed.shape() != self.shape() {
            return Err(TensorError::shape("backward", format!("seed {} for output {}", seed.shape(), self.shape())));
        }
        let order = topological_order(self);
        let mut pending: HashMap<TensorId, Tensor> = HashMap::new();
        pending.insert(self.id(), seed);
        let mut out = Gradients::default();
        for t in order.iter().rev() {
            let Some(grad) = pending.remove(&t.id()) else { continue };
            match t.node() {
                None => {
                    if t.is_var() {
                        out.map.insert(t.id(), grad);
                    }
                }
                Some(node) => {
                    let needs: Vec<bool> = node.inputs.iter().map(|i| i.requires_grad()).collect();
                    let grads = node.op.backward(&node.inputs, t, &grad, &needs);
                    debug_assert_eq!(grads.len(), node.inputs.len(), "{} returned a wrong count", node.op.name());
                    for ((input, g), need) in node.inputs.iter().zip(grads).zip(needs) {
                        let Some(g) = g else { continue };
                        if !need {
                            continue;
                        }
                        debug_assert_eq!(g.shape(), input.shape(), "{}: gradient shape", node.op.name());
                        match pending.remove(&input.id()) {
                            None => {
                                pending.insert(input.id(), g);
                            }
                            Some(prev) => {
                                pending.insert(input.id(), accumulate(prev, g));
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// `a + b` for same-shaped gradients, added into whichever buffer is not
/// shared (gradients are shared when an op passes its output's gradient on
/// unchanged, as a sum does): a copy only when both are.
fn accumulate(a: Tensor, b: Tensor) -> Tensor {
    let (dst, src) = if !a.is_unique() && b.is_unique() { (b, a) } else { (a, b) };
    // a gradient that is itself differentiable keeps its graph out of the sum
    let mut dst = if dst.requires_grad() { dst.detach() } else { dst };
    for (x, y) in dst.data_mut().iter_mut().zip(src.data()) {
        *x += *y;
    }
    dst
}

/// Every tensor reachable from `root` that requires a gradient, inputs before
/// the tensors computed from them. Iterative, so deep networks cannot overflow the stack.
fn topological_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut visited: HashSet<TensorId> = HashSet::new();
    // (tensor, whether its inputs were already pushed)
    let mut stack: Vec<(Tensor, bool)> = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !visited.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(node) = t.node() {
            for input in &node.inputs {
                if input.requires_grad() && !visited.contains(&input.id()) {
                    stack.push((input.clone(), false));
                }
            }
        }
    }
    order
}
