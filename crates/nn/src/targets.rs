//! What a model is trained against: class indices (`y` as Keras' sparse labels) or a
//! dense tensor (one-hot rows for categorical cross-entropy, 0/1 values for binary).

use convnet_tensor::Tensor;

use crate::{NnError, Result};

/// Training targets, one entry (or row) per sample.
#[derive(Clone, Debug)]
pub enum Targets {
    /// Class indices `0..classes` (for `sparse_categorical_crossentropy`; also accepted by
    /// `categorical_crossentropy` as implicit one-hot rows).
    Sparse(Vec<u32>),
    /// `[n, ...]` target values: one-hot or soft rows `[n, classes]`, or binary targets
    /// shaped like the model output.
    Dense(Tensor),
}

impl Targets {
    /// Class labels from bytes (MNIST's `u8` labels).
    pub fn from_labels(labels: &[u8]) -> Targets {
        Targets::Sparse(labels.iter().map(|&l| u32::from(l)).collect())
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Targets::Sparse(l) => l.len(),
            Targets::Dense(t) => t.dims().first().copied().unwrap_or(0),
        }
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The class indices, if sparse.
    pub fn as_sparse(&self) -> Option<&[u32]> {
        match self {
            Targets::Sparse(l) => Some(l),
            Targets::Dense(_) => None,
        }
    }

    /// The samples at `idx`, in that order.
    pub(crate) fn gather(&self, idx: &[usize]) -> Result<Targets> {
        Ok(match self {
            Targets::Sparse(l) => Targets::Sparse(idx.iter().map(|&i| l[i]).collect()),
            Targets::Dense(t) => Targets::Dense(gather_rows(t, idx)?),
        })
    }

    /// Samples `start..end`.
    pub(crate) fn range(&self, start: usize, end: usize) -> Result<Targets> {
        Ok(match self {
            Targets::Sparse(l) => Targets::Sparse(l[start..end].to_vec()),
            Targets::Dense(t) => Targets::Dense(slice_rows(t, start, end)?),
        })
    }
}

impl From<Vec<u32>> for Targets {
    fn from(labels: Vec<u32>) -> Self {
        Targets::Sparse(labels)
    }
}

impl From<Tensor> for Targets {
    fn from(t: Tensor) -> Self {
        Targets::Dense(t)
    }
}

/// Values per sample of a `[n, ...]` tensor.
fn row_len(x: &Tensor) -> Result<usize> {
    match x.dims().first() {
        Some(&n) if n > 0 => Ok(x.numel() / n),
        Some(_) => Ok(x.dims()[1..].iter().product()),
        None => Err(NnError::arg("x", "expected a batch axis, got a scalar")),
    }
}

/// Rows `idx` of a `[n, ...]` tensor, copied into a new batch (the one copy per step).
pub(crate) fn gather_rows(x: &Tensor, idx: &[usize]) -> Result<Tensor> {
    let row = row_len(x)?;
    let mut data = Vec::with_capacity(idx.len() * row);
    for &i in idx {
        data.extend_from_slice(&x.data()[i * row..(i + 1) * row]);
    }
    let mut shape = x.dims().to_vec();
    shape[0] = idx.len();
    Ok(Tensor::from_vec(data, shape)?)
}

/// Rows `start..end` of a `[n, ...]` tensor (the whole tensor without a copy when they are
/// all of it).
pub(crate) fn slice_rows(x: &Tensor, start: usize, end: usize) -> Result<Tensor> {
    if start == 0 && x.dims().first() == Some(&end) {
        return Ok(x.clone());
    }
    let row = row_len(x)?;
    let mut shape = x.dims().to_vec();
    shape[0] = end - start;
    Ok(Tensor::from_vec(x.data()[start * row..end * row].to_vec(), shape)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_and_slices_rows() {
        let t = Tensor::from_vec((0..6).map(|v| v as f32).collect(), [3, 2]).unwrap();
        let g = gather_rows(&t, &[2, 0]).unwrap();
        assert_eq!(g.dims(), [2, 2]);
        assert_eq!(g.data(), [4.0, 5.0, 0.0, 1.0]);
        assert_eq!(slice_rows(&t, 1, 2).unwrap().data(), [2.0, 3.0]);
        let y = Targets::from_labels(&[3, 1, 4]);
        assert_eq!(y.gather(&[2, 2]).unwrap().as_sparse().unwrap(), [4, 4]);
        assert_eq!(y.range(1, 3).unwrap().len(), 2);
        assert_eq!(Targets::Dense(t).gather(&[1]).unwrap().len(), 1);
    }
}
