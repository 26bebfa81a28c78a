//! [`Graph`]: layers wired as a directed acyclic graph, for networks that are not a chain
//! (the residual `Add` of inverted-residual blocks).
//!
//! Value 0 is the graph's input; node `i` produces value `i + 1`; the last node's value is
//! the output. Nodes are kept in topological order (each reads values made before it).
//! Parameters are named `<node>.<param>`, so a backbone imported from ONNX keeps its node
//! names.
//!
//! [`Graph::freeze_through`] freezes a prefix of the nodes: they run in evaluation mode
//! (BatchNorm on running statistics, nothing kept for backward), their parameters become
//! buffers (saved, never stepped), and the backward pass stops before them.

use std::collections::HashMap;

use crate::{
    Error, Result,
    module::{Ctx, Module, Param, ParamKind, Tensor, join},
};

/// What a node computes.
#[derive(Debug)]
pub enum Op {
    /// A layer of one input.
    Layer(Box<dyn Module>),
    /// The elementwise sum of two values of the same shape.
    Add,
}

/// One node: its name, the values it reads and its op.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub inputs: Vec<usize>,
    pub op: Op,
}

/// A DAG of layers with one input and one output.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: Vec<Node>,
    /// The first `frozen` nodes are frozen.
    frozen: usize,
    input_shape: Option<Vec<usize>>,
    /// Which nodes are activations fused into the layer before them (made at the first
    /// pass after the graph last changed; see [`Graph::fuse`]).
    fused: Option<Vec<bool>>,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    /// The id of the graph's input value.
    pub const INPUT: usize = 0;

    fn check_inputs(&self, name: &str, inputs: &[usize]) -> Result<()> {
        if let Some(&v) = inputs.iter().find(|&&v| v > self.nodes.len()) {
            return Err(Error::invalid(
                "graph",
                format!(
                    "node `{name}` reads value {v}, which is not made before it ({} values so far)",
                    self.nodes.len() + 1
                ),
            ));
        }
        if self.nodes.iter().any(|n| n.name == name) {
            return Err(Error::invalid(
                "graph",
                format!("two nodes are named `{name}`"),
            ));
        }
        Ok(())
    }

    /// Appends `layer` reading value `input`; returns the value it makes.
    pub fn push_layer(
        &mut self,
        name: &str,
        input: usize,
        layer: Box<dyn Module>,
    ) -> Result<usize> {
        self.check_inputs(name, &[input])?;
        self.unfuse();
        self.nodes.push(Node {
            name: name.to_string(),
            inputs: vec![input],
            op: Op::Layer(layer),
        });
        Ok(self.nodes.len())
    }

    /// Appends the sum of values `a` and `b`; returns the value it makes.
    pub fn push_add(&mut self, name: &str, a: usize, b: usize) -> Result<usize> {
        self.check_inputs(name, &[a, b])?;
        self.unfuse();
        self.nodes.push(Node {
            name: name.to_string(),
            inputs: vec![a, b],
            op: Op::Add,
        });
        Ok(self.nodes.len())
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// How many leading nodes are frozen.
    pub fn frozen(&self) -> usize {
        self.frozen
    }

    /// Freezes every node up to and including `name`; an error lists where names can be
    /// found when no node has it.
    pub fn freeze_through(&mut self, name: &str) -> Result<()> {
        let Some(i) = self.nodes.iter().position(|n| n.name == name) else {
            let first: Vec<&str> = self.nodes.iter().take(4).map(|n| n.name.as_str()).collect();
            return Err(Error::invalid(
                "freeze point",
                format!(
                    "no node is named `{name}` (the {} nodes run from `{}` to `{}`; `tl models inspect MODEL` lists them)",
                    self.nodes.len(),
                    first.join("`, `"),
                    self.nodes.last().map_or("", |n| n.name.as_str())
                ),
            ));
        };
        self.freeze_first(i + 1);
        Ok(())
    }

    /// Freezes the first `count` nodes.
    pub fn freeze_first(&mut self, count: usize) {
        self.unfuse();
        self.frozen = count.min(self.nodes.len());
        for node in &mut self.nodes[..self.frozen] {
            if let Op::Layer(l) = &mut node.op {
                l.visit_mut("", &mut |_, p| p.kind = ParamKind::Buffer);
            }
        }
    }

    /// Fuses each activation node into the layer before it where that layer can take it
    /// ([`Module::fuse_activation`]: BatchNorm), the activation reads only that layer's
    /// value, nothing else reads it, and both are on one side of the frozen prefix. The
    /// nodes, their names and parameters stay as they are; a fused activation node passes
    /// its input's value on (moved, not copied), and the layer before computes it.
    pub fn fuse(&mut self) {
        if self.fused.is_some() {
            return;
        }
        let mut readers = vec![0usize; self.nodes.len() + 1];
        for n in &self.nodes {
            for &v in &n.inputs {
                readers[v] += 1;
            }
        }
        let mut fused = vec![false; self.nodes.len()];
        for j in 1..self.nodes.len() {
            let i = j - 1;
            let act = match &self.nodes[j].op {
                Op::Layer(l) => l.as_activation(),
                Op::Add => None,
            };
            let (Some(act), true) = (act, self.nodes[j].inputs == [i + 1]) else {
                continue;
            };
            if readers[i + 1] != 1 || (i < self.frozen) != (j < self.frozen) || fused[i] {
                continue;
            }
            if let Op::Layer(l) = &mut self.nodes[i].op {
                fused[j] = l.fuse_activation(Some(act));
            }
        }
        self.fused = Some(fused);
    }

    /// Undoes [`Graph::fuse`].
    fn unfuse(&mut self) {
        let Some(fused) = self.fused.take() else {
            return;
        };
        for (j, &f) in fused.iter().enumerate() {
            if let (true, Op::Layer(l)) = (f, &mut self.nodes[j - 1].op) {
                l.fuse_activation(None);
            }
        }
    }

    /// Whether backward computes the gradient of the graph's input (on by default). Off,
    /// the layers that read the input skip it where they can (their part of the input
    /// gradient backward returns is then zeros): for a backbone fine-tuned on images, whose
    /// pixels need no gradient.
    pub fn set_input_grad(&mut self, on: bool) {
        for n in &mut self.nodes {
            if let (Op::Layer(l), true) = (&mut n.op, n.inputs.contains(&Graph::INPUT)) {
                l.set_input_grad(on);
            }
        }
    }

    /// For each value, the last node that reads it.
    fn last_use(&self) -> Vec<usize> {
        let mut last = vec![0; self.nodes.len() + 1];
        for (i, n) in self.nodes.iter().enumerate() {
            for &v in &n.inputs {
                last[v] = i;
            }
        }
        last
    }
}

fn add_into(slot: &mut Option<Tensor>, g: &Tensor) {
    match slot {
        Some(s) => *s += g,
        None => *slot = Some(g.clone()),
    }
}

impl Module for Graph {
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        if self.nodes.is_empty() {
            return Ok(x.clone());
        }
        self.fuse();
        let fused = self.fused.clone().expect("fused above");
        let last = self.last_use();
        let mut values: Vec<Option<Tensor>> = vec![None; self.nodes.len() + 1];
        values[0] = Some(x.clone());
        let mut frozen_ctx = Ctx::eval();
        let out = self.nodes.len();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if fused[i] {
                // Computed by the layer before: the value moves on.
                values[i + 1] = values[i].take();
                continue;
            }
            let c = if i < self.frozen {
                &mut frozen_ctx
            } else {
                &mut *ctx
            };
            let get = |v: usize| values[v].as_ref().expect("values are made before use");
            let y = match &mut node.op {
                Op::Layer(l) => l.forward(get(node.inputs[0]), c)?,
                Op::Add => {
                    let (a, b) = (get(node.inputs[0]), get(node.inputs[1]));
                    if a.shape() != b.shape() {
                        return Err(Error::shape(
                            format!("inputs of `{}` (Add)", node.name),
                            format!("two equal shapes, the first {:?}", a.shape()),
                            b.shape(),
                        ));
                    }
                    a + b
                }
            };
            for &v in &node.inputs {
                if last[v] == i && v != out {
                    values[v] = None;
                }
            }
            values[i + 1] = Some(y);
        }
        if ctx.train {
            self.input_shape = Some(x.shape().to_vec());
        }
        Ok(values[out].take().expect("the last node's value"))
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let shape = crate::module::cached(&self.input_shape, "graph")?.clone();
        if self.nodes.is_empty() {
            return Ok(grad_out.clone());
        }
        let mut grads: Vec<Option<Tensor>> = vec![None; self.nodes.len() + 1];
        grads[self.nodes.len()] = Some(grad_out.clone());
        let fused = self.fused.clone().unwrap_or_default();
        for i in (self.frozen..self.nodes.len()).rev() {
            let Some(g) = grads[i + 1].take() else {
                continue;
            };
            if fused.get(i) == Some(&true) {
                // The layer before differentiates through the activation.
                grads[i] = Some(g);
                continue;
            }
            let node = &mut self.nodes[i];
            match &mut node.op {
                Op::Layer(l) => {
                    let dx = l.backward(&g)?;
                    add_into(&mut grads[node.inputs[0]], &dx);
                }
                Op::Add => {
                    add_into(&mut grads[node.inputs[0]], &g);
                    add_into(&mut grads[node.inputs[1]], &g);
                }
            }
        }
        Ok(grads[0].take().unwrap_or_else(|| Tensor::zeros(shape)))
    }

    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param)) {
        for n in &self.nodes {
            if let Op::Layer(l) = &n.op {
                l.visit(&join(prefix, &n.name), f);
            }
        }
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        for n in &mut self.nodes {
            if let Op::Layer(l) = &mut n.op {
                l.visit_mut(&join(prefix, &n.name), f);
            }
        }
    }

    fn describe(&self) -> String {
        let mut kinds: HashMap<String, usize> = HashMap::new();
        let mut order = Vec::new();
        for n in &self.nodes {
            let d = match &n.op {
                Op::Layer(l) => l.describe(),
                Op::Add => "add".into(),
            };
            let kind = d.split([' ', '/']).next().unwrap_or("").to_string();
            if !kinds.contains_key(&kind) {
                order.push(kind.clone());
            }
            *kinds.entry(kind).or_default() += 1;
        }
        let parts: Vec<String> = order.iter().map(|k| format!("{}×{k}", kinds[k])).collect();
        let frozen = if self.frozen > 0 {
            format!(", first {} frozen", self.frozen)
        } else {
            String::new()
        };
        format!(
            "graph of {} nodes ({}{frozen})",
            self.nodes.len(),
            parts.join(", ")
        )
    }
}
