//! The Keras course's MNIST CNN, line for line with the convnet API.
//!
//! Run from the repository root: `cargo run --release --example mnist_cnn`
//! (set `EPOCHS=1` for a quick look).

use convnet::data::Mnist;
use convnet::plot::plot_train_history;
use convnet::{Activation, Adam, Conv2D, Dense, Dropout, FitOptions, Flatten, Loss, MaxPooling2D, Metric};
use convnet::{Padding, Sequential, Targets, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // (x_Train, y_Train), (x_Test, y_Test) = mnist.load_data()
    let mnist = Mnist::load("data/mnist")?;
    // x_Train4D_normalize = x_Train.reshape(60000, 28, 28, 1).astype('float32') / 255
    let x_train = Tensor::from_vec(mnist.train_images.to_f32_nhwc(), mnist.train_images.shape_nhwc())?;
    let x_test = Tensor::from_vec(mnist.test_images.to_f32_nhwc(), mnist.test_images.shape_nhwc())?;
    let y_train = Targets::Sparse(mnist.train_labels.iter().map(|&l| l as u32).collect());
    let y_test = Targets::Sparse(mnist.test_labels.iter().map(|&l| l as u32).collect());

    // model = Sequential()
    let mut model = Sequential::new([28, 28, 1]);
    model.add(Conv2D::new(32, (5, 5)).with_padding(Padding::Same).with_activation(Activation::Relu))?;
    model.add(MaxPooling2D::new((2, 2)))?;
    model.add(Conv2D::new(64, (5, 5)).with_padding(Padding::Same).with_activation(Activation::Relu))?;
    model.add(MaxPooling2D::new((2, 2)))?;
    model.add(Dropout::new(0.25))?;
    model.add(Flatten::new())?;
    model.add(Dense::new(128).with_activation(Activation::Relu))?;
    model.add(Dropout::new(0.5))?;
    model.add(Dense::new(10).with_activation(Activation::Softmax))?;
    println!("{}", model.summary());

    // model.compile(loss='sparse_categorical_crossentropy', optimizer='adam', metrics=['accuracy'])
    model.compile(Loss::sparse_categorical_crossentropy(), Adam::default(), &[Metric::Accuracy])?;

    // train_history = model.fit(x, y, validation_data=(x_test, y_test), epochs=12, batch_size=128, verbose=1)
    let epochs = std::env::var("EPOCHS").ok().and_then(|e| e.parse().ok()).unwrap_or(12);
    let train_history = model.fit(
        &x_train,
        &y_train,
        FitOptions::new(128, epochs).with_validation_data(x_test.clone(), y_test.clone()).with_verbose(1),
    )?;

    // model.save('models/mnist_cnn.h5')
    std::fs::create_dir_all("models")?;
    model.save("models/mnist_cnn.safetensors")?;

    // show_train_history(train_history, 'accuracy', 'val_accuracy') and the same for loss
    let h = &train_history;
    plot_train_history(
        "models/mnist_cnn_accuracy.png",
        "Train History",
        &h.accuracy,
        &h.val_accuracy,
        "train",
        "validation",
        "accuracy",
    )?;
    plot_train_history(
        "models/mnist_cnn_loss.png",
        "Train History",
        &h.loss,
        &h.val_loss,
        "train",
        "validation",
        "loss",
    )?;

    // scores = model.evaluate(x_Train4D_normalize, y_Train); print('Train Accuracy: ', scores[1])
    let scores = model.evaluate(&x_train, &y_train, 128)?;
    println!("Train Accuracy: {:.4}", scores.accuracy.unwrap_or(f64::NAN));
    let scores = model.evaluate(&x_test, &y_test, 128)?;
    println!("Test Accuracy: {:.4}", scores.accuracy.unwrap_or(f64::NAN));
    Ok(())
}
