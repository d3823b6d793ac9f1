//! The [`Tensor`] type.

use crate::autograd::{Backward, Node};
use crate::{Result, Shape, TensorError};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Identity of a tensor value in an autograd graph (gradients are keyed by it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

impl TensorId {
    fn fresh() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        TensorId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// An immutable f32 n-d array, cheap to clone (reference counted).
///
/// Data are contiguous and row-major. A tensor is a *variable* when it was
/// made with [`Tensor::var`]; results of ops on variables remember how they
/// were computed so that [`Tensor::backward`] can differentiate them.
#[derive(Clone)]
pub struct Tensor {
    inner: Arc<Inner>,
}

struct Inner {
    id: TensorId,
    shape: Shape,
    data: Arc<Vec<f32>>,
    node: Option<Node>,
    is_var: bool,
}

impl Drop for Inner {
    /// Dropping a graph node drops its inputs, whose nodes drop theirs, and so
    /// on: done recursively, a chain of ~20,000 ops overflows a 2 MiB thread
    /// stack. Unwind it with an explicit stack instead, taking the inputs out
    /// of every node this drop holds the last reference to.
    fn drop(&mut self) {
        let Some(node) = self.node.take() else { return };
        let mut pending = node.inputs;
        while let Some(t) = pending.pop() {
            if let Ok(mut inner) = Arc::try_unwrap(t.inner)
                && let Some(n) = inner.node.take()
            {
                pending.extend(n.inputs);
            }
        }
    }
}

impl Tensor {
    /// A constant tensor of `shape` holding `data` (row-major).
    pub fn from_vec(data: Vec<f32>, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if shape.numel() != data.len() {
            return Err(TensorError::shape(
                "from_vec",
                format!("shape {shape} needs {} values, got {}", shape.numel(), data.len()),
            ));
        }
        Ok(Self::new_raw(data, shape, None, false))
    }

    /// A constant tensor of `shape` filled with `value`.
    pub fn full(shape: impl Into<Shape>, value: f32) -> Tensor {
        let shape = shape.into();
        Self::new_raw(vec![value; shape.numel()], shape, None, false)
    }

    /// A constant tensor of zeros.
    pub fn zeros(shape: impl Into<Shape>) -> Tensor {
        Self::full(shape, 0.0)
    }

    /// A scalar (shape `[]`).
    pub fn scalar(value: f32) -> Tensor {
        Self::new_raw(vec![value], Shape(vec![]), None, false)
    }

    /// This value as a trainable variable: a leaf whose gradient `backward` returns.
    pub fn var(&self) -> Tensor {
        Tensor {
            inner: Arc::new(Inner {
                id: TensorId::fresh(),
                shape: self.inner.shape.clone(),
                data: self.inner.data.clone(),
                node: None,
                is_var: true,
            }),
        }
    }

    /// The same values, cut from the graph (no gradient flows through it).
    pub fn detach(&self) -> Tensor {
        if !self.requires_grad() {
            return self.clone();
        }
        Self::with_data(self.inner.data.clone(), self.inner.shape.clone(), None, false)
    }

    pub(crate) fn new_raw(data: Vec<f32>, shape: Shape, node: Option<Node>, is_var: bool) -> Tensor {
        Self::with_data(Arc::new(data), shape, node, is_var)
    }

    fn with_data(data: Arc<Vec<f32>>, shape: Shape, node: Option<Node>, is_var: bool) -> Tensor {
        debug_assert_eq!(data.len(), shape.numel());
        Tensor { inner: Arc::new(Inner { id: TensorId::fresh(), shape, data, node, is_var }) }
    }

    /// The result of an op: records `op` in the graph when an input requires a gradient.
    pub fn from_op(data: Vec<f32>, shape: impl Into<Shape>, inputs: &[&Tensor], op: impl Backward + 'static) -> Tensor {
        let shape = shape.into();
        let node = if inputs.iter().any(|t| t.requires_grad()) {
            Some(Node { op: Box::new(op), inputs: inputs.iter().map(|t| (*t).clone()).collect() })
        } else {
            None
        };
        Self::new_raw(data, shape, node, false)
    }

    /// A new tensor sharing this one's data with another shape (same element count).
    pub(crate) fn share_data(&self, shape: Shape, inputs: &[&Tensor], op: impl Backward + 'static) -> Tensor {
        let node = if inputs.iter().any(|t| t.requires_grad()) {
            Some(Node { op: Box::new(op), inputs: inputs.iter().map(|t| (*t).clone()).collect() })
        } else {
            None
        };
        Self::with_data(self.inner.data.clone(), shape, node, false)
    }

    /// Identity of this value in the graph.
    pub fn id(&self) -> TensorId {
        self.inner.id
    }
    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.inner.shape
    }
    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.inner.shape.0
    }
    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.inner.shape.rank()
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.inner.data.len()
    }
    /// The values, row-major.
    pub fn data(&self) -> &[f32] {
        &self.inner.data
    }
    /// A copy of the values.
    pub fn to_vec(&self) -> Vec<f32> {
        self.inner.data.to_vec()
    }
    /// The only value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        match self.data() {
            [v] => Ok(*v),
            _ => Err(TensorError::shape("item", format!("expected one element, shape is {}", self.shape()))),
        }
    }
    /// Whether a gradient can flow back from this tensor.
    pub fn requires_grad(&self) -> bool {
        self.inner.is_var || self.inner.node.is_some()
    }
    /// Whether this is a leaf variable.
    pub fn is_var(&self) -> bool {
        self.inner.is_var
    }
    pub(crate) fn node(&self) -> Option<&Node> {
        self.inner.node.as_ref()
    }

    /// Whether this handle is the only owner of the tensor and of its data
    /// (so [`Tensor::data_mut`] will not copy).
    pub(crate) fn is_unique(&self) -> bool {
        Arc::strong_count(&self.inner) == 1 && Arc::strong_count(&self.inner.data) == 1
    }

    /// Mutable access to the values, for optimizers updating parameters in
    /// place. Copies the data first if anything else shares it (a live graph
    /// still referencing the old value keeps seeing the old value).
    pub fn data_mut(&mut self) -> &mut [f32] {
        let inner = Arc::make_mut_inner(&mut self.inner);
        Arc::make_mut(&mut inner.data).as_mut_slice()
    }
}

/// `Arc::make_mut` for [`Inner`], which is not `Clone` because the graph node is not.
trait MakeMutInner {
    fn make_mut_inner(this: &mut Arc<Inner>) -> &mut Inner;
}
impl MakeMutInner for Arc<Inner> {
    fn make_mut_inner(this: &mut Arc<Inner>) -> &mut Inner {
        if Arc::get_mut(this).is_none() {
            let copy = Inner {
                id: this.id,
                shape: this.shape.clone(),
                data: this.data.clone(),
                node: None,
                is_var: this.is_var,
            };
            *this = Arc::new(copy);
        }
        Arc::get_mut(this).expect("unique after copy")
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.data();
        let head: Vec<f32> = d.iter().take(8).copied().collect();
        write!(f, "Tensor{} {:?}{}", self.shape(), head, if d.len() > 8 { " ..." } else { "" })
    }
}
