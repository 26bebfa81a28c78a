//! Small CNNs of the seed's families (VGG, ResNet, Inception, MobileNet) with seeded
//! random weights, built with [`crate::builder`]: fast fixtures for tests of every layer
//! that touches a backbone. Each takes `input` [N, 3, H, W] (any H, W ≥ 8) and gives
//! `features` [N, C] (global average pool) and `logits` [N, classes].

use rand::Rng;

use crate::{
    OnnxModel, Result,
    builder::{GraphBuilder, ModelBuilder, attr},
};

/// The families [`tiny`] can build.
pub const FAMILIES: [&str; 4] = ["vgg", "resnet", "inception", "mobilenet"];

struct Net {
    g: GraphBuilder,
    rng: rand_chacha::ChaCha8Rng,
}

impl Net {
    fn new(name: &str, seed: u64) -> Self {
        let mut g = GraphBuilder::new(name);
        g.image_input("input", 3);
        Self {
            g,
            rng: tl_core::rng::seeded_rng(seed, name),
        }
    }

    fn weights(&mut self, name: &str, dims: &[usize], fan_in: usize) -> String {
        let n: usize = dims.iter().product();
        let scale = (2.0 / fan_in as f32).sqrt();
        let data: Vec<f32> = (0..n)
            .map(|_| (self.rng.random::<f32>() * 2.0 - 1.0) * scale)
            .collect();
        self.g.initializer(name, dims, &data)
    }

    /// Convolution (+ bias) with symmetric padding `k / 2`, optional ReLU.
    // One positional argument per Conv attribute reads best at the call sites below.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        x: &str,
        name: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        groups: usize,
        relu: bool,
    ) -> String {
        let w = self.weights(
            &format!("{name}.weight"),
            &[cout, cin / groups, k, k],
            cin / groups * k * k,
        );
        let b = self.weights(&format!("{name}.bias"), &[cout], cout);
        let p = (k / 2) as i64;
        let out = if relu {
            format!("{name}.conv")
        } else {
            name.to_string()
        };
        let y = self.g.op(
            "Conv",
            &out,
            &[x, &w, &b],
            vec![
                attr::ints("kernel_shape", &[k as i64, k as i64]),
                attr::ints("strides", &[stride as i64, stride as i64]),
                attr::ints("pads", &[p, p, p, p]),
                attr::int("group", groups as i64),
            ],
        );
        if relu {
            self.g.op("Relu", name, &[&y], vec![])
        } else {
            y
        }
    }

    fn head(mut self, x: &str, width: usize, classes: usize, doc: &str) -> Result<OnnxModel> {
        let w = self.weights("fc.weight", &[classes, width], width);
        let b = self.weights("fc.bias", &[classes], width);
        self.g.pooled_classifier(x, &w, &b, width, classes);
        ModelBuilder::new(self.g.build()).opset(17).doc(doc).build()
    }
}

/// A tiny network of `family` (one of [`FAMILIES`]) with weights drawn from `seed`.
pub fn tiny(family: &str, seed: u64, classes: usize) -> Result<OnnxModel> {
    match family {
        "vgg" => {
            let mut n = Net::new("tiny-vgg", seed);
            let x = n.conv("input", "block1.conv1", 3, 8, 3, 1, 1, true);
            let x = n.conv(&x, "block1.conv2", 8, 8, 3, 1, 1, true);
            let x = n.g.op(
                "MaxPool",
                "block1.pool",
                &[&x],
                vec![
                    attr::ints("kernel_shape", &[2, 2]),
                    attr::ints("strides", &[2, 2]),
                ],
            );
            let x = n.conv(&x, "block2.conv1", 8, 16, 3, 1, 1, true);
            n.head(
                &x,
                16,
                classes,
                "tiny VGG: two conv blocks with max pooling",
            )
        }
        "resnet" => {
            let mut n = Net::new("tiny-resnet", seed);
            let stem = n.conv("input", "stem", 3, 8, 3, 2, 1, true);
            let a = n.conv(&stem, "layer1.conv1", 8, 8, 3, 1, 1, true);
            let b = n.conv(&a, "layer1.conv2", 8, 8, 3, 1, 1, false);
            let sum = n.g.op("Add", "layer1.add", &[&b, &stem], vec![]);
            let x = n.g.op("Relu", "layer1", &[&sum], vec![]);
            n.head(
                &x,
                8,
                classes,
                "tiny ResNet: a stem and one basic residual block",
            )
        }
        "inception" => {
            let mut n = Net::new("tiny-inception", seed);
            let stem = n.conv("input", "stem", 3, 8, 3, 2, 1, true);
            let b1 = n.conv(&stem, "mixed.branch1x1", 8, 4, 1, 1, 1, true);
            let b3 = n.conv(&stem, "mixed.branch3x3", 8, 4, 3, 1, 1, true);
            let b5 = n.conv(&stem, "mixed.branch5x5", 8, 4, 5, 1, 1, true);
            let pool = n.g.op(
                "MaxPool",
                "mixed.pool",
                &[&stem],
                vec![
                    attr::ints("kernel_shape", &[3, 3]),
                    attr::ints("strides", &[1, 1]),
                    attr::ints("pads", &[1, 1, 1, 1]),
                ],
            );
            let bp = n.conv(&pool, "mixed.branch_pool", 8, 4, 1, 1, 1, true);
            let x = n.g.op(
                "Concat",
                "mixed",
                &[&b1, &b3, &b5, &bp],
                vec![attr::int("axis", 1)],
            );
            n.head(
                &x,
                16,
                classes,
                "tiny Inception: a stem and one mixed block of four parallel branches",
            )
        }
        "mobilenet" => {
            let mut n = Net::new("tiny-mobilenet", seed);
            let stem = n.conv("input", "stem", 3, 8, 3, 2, 1, true);
            let e = n.conv(&stem, "block1.expand", 8, 16, 1, 1, 1, true);
            let d = n.conv(&e, "block1.dw", 16, 16, 3, 1, 16, true);
            let p = n.conv(&d, "block1.project", 16, 8, 1, 1, 1, false);
            let x = n.g.op("Add", "block1", &[&p, &stem], vec![]);
            n.head(
                &x,
                8,
                classes,
                "tiny MobileNet: one inverted residual with a depthwise convolution",
            )
        }
        other => Err(crate::Error::Build(format!(
            "no tiny network of family `{other}` (known: {})",
            FAMILIES.join(", ")
        ))),
    }
}
