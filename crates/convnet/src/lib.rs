//! convnet convnet
