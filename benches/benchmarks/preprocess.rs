//! Decode + Pillow-compatible resize + crop + normalise of a real photo.

use criterion::{Criterion, Throughput, criterion_group};
use tl_core::ImageContract;
use tl_features::image::{
    Decoded, Gray8, batch, batch_shape, load_rgb, preprocess_files, preprocess_into,
    resize_and_crop,
};

fn contract(size: u32) -> ImageContract {
    ImageContract::rgb_center_crop("input", size, [127.0; 3], [128.0; 3])
}

fn bench(c: &mut Criterion) {
    let photo = super::fetched("assets", "sample-photos", "chelsea.png");
    let img = load_rgb(&photo).unwrap();
    let mut g = c.benchmark_group("preprocess");
    g.throughput(Throughput::Elements(1));
    for size in [224u32, 112] {
        let k = contract(size);
        g.bench_function(format!("resize_crop_normalise/451x300->{size}"), |b| {
            b.iter(|| batch(&k, &[resize_and_crop(&k, &img)]))
        });
    }
    // An MNIST digit (28×28 gray), as `tl extract` preprocesses one row into its batch.
    let digit = Decoded::Gray(
        Gray8::new(28, 28, (0..784).map(|i| (i * 37 % 256) as u8).collect()).unwrap(),
    );
    for size in [224u32, 112] {
        let k = contract(size);
        let mut out = ndarray::Array4::<f32>::zeros(batch_shape(&k, 1));
        g.bench_function(format!("preprocess_into/28x28_gray->{size}"), |b| {
            b.iter(|| preprocess_into(&k, &digit, out.index_axis_mut(ndarray::Axis(0), 0)))
        });
    }
    let k = contract(224);
    let files = vec![photo.clone(); 16];
    g.throughput(Throughput::Elements(16));
    g.bench_function("decode_resize_normalise/16_png_files", |b| {
        b.iter(|| preprocess_files(&k, &files).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
