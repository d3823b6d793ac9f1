//! convnet nn
