//! [`Graph`]: layers wired as a directed acyclic graph, for networks that are not a chain:
//! the residual `Add` of inverted-residual blocks, the channel `Concat` of Inception
//! blocks, and several tapped outputs (a detector's pyramid levels).
//!
//! Value 0 is the graph's input; node `i` produces value `i + 1`; the outputs are the last
//! node's value, or the values [`Graph::set_outputs`] names ([`Graph::forward_all`] and
//! [`Graph::backward_all`] run them together). Nodes are kept in topological order (each reads values made before it).
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
    /// The values joined along the channel axis (axis 1); the other axes must agree. The
    /// channel counts of the last training pass are kept for backward.
    Concat(Vec<usize>),
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
    /// The values returned, in order; empty: the last node's.
    outputs: Vec<usize>,
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

    /// Appends the concatenation of `inputs` along the channel axis; returns the value it
    /// makes.
    pub fn push_concat(&mut self, name: &str, inputs: &[usize]) -> Result<usize> {
        if inputs.is_empty() {
            return Err(Error::invalid(
                "graph",
                format!("concat node `{name}` has no inputs"),
            ));
        }
        self.check_inputs(name, inputs)?;
        self.unfuse();
        self.nodes.push(Node {
            name: name.to_string(),
            inputs: inputs.to_vec(),
            op: Op::Concat(Vec::new()),
        });
        Ok(self.nodes.len())
    }

    /// Makes `values` the graph's outputs, in that order (a value may be any node's, or
    /// the input); [`Graph::forward_all`] returns them. Empty: the last node's value.
    pub fn set_outputs(&mut self, values: &[usize]) -> Result<()> {
        if let Some(&v) = values.iter().find(|&&v| v > self.nodes.len()) {
            return Err(Error::invalid(
                "graph outputs",
                format!("value {v} does not exist ({} values)", self.nodes.len() + 1),
            ));
        }
        self.unfuse();
        self.outputs = values.to_vec();
        Ok(())
    }

    /// The output values: those set, or the last node's.
    pub fn outputs(&self) -> Vec<usize> {
        if self.outputs.is_empty() {
            vec![self.nodes.len()]
        } else {
            self.outputs.clone()
        }
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
        // A tapped value is read from outside: never fused away.
        for v in self.outputs() {
            readers[v] += 1;
        }
        let mut fused = vec![false; self.nodes.len()];
        for j in 1..self.nodes.len() {
            let i = j - 1;
            let act = match &self.nodes[j].op {
                Op::Layer(l) => l.as_activation(),
                Op::Add | Op::Concat(_) => None,
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

/// Adds a gradient into a slot; the first one moves in without a copy.
fn add_into(slot: &mut Option<Tensor>, g: Tensor) {
    match slot {
        Some(s) => *s += &g,
        None => *slot = Some(g),
    }
}

impl Graph {
    /// Runs the graph on `x` and returns its outputs (see [`Graph::set_outputs`]) in order.
    /// Values are dropped as soon as no later node or output needs them.
    pub fn forward_all(&mut self, x: &Tensor, ctx: &mut Ctx) -> Result<Vec<Tensor>> {
        self.forward_all_owned(x.clone(), ctx)
    }

    /// [`Graph::forward_all`] of an input the caller no longer needs (no copy of it).
    pub fn forward_all_owned(&mut self, x: Tensor, ctx: &mut Ctx) -> Result<Vec<Tensor>> {
        let outputs = self.outputs();
        if ctx.train {
            self.input_shape = Some(x.shape().to_vec());
        }
        if self.nodes.is_empty() {
            return Ok(vec![x; outputs.len()]);
        }
        self.fuse();
        let fused = self.fused.clone().expect("fused above");
        let last = self.last_use();
        let mut kept = vec![false; self.nodes.len() + 1];
        for &v in &outputs {
            kept[v] = true;
        }
        let mut values: Vec<Option<Tensor>> = vec![None; self.nodes.len() + 1];
        values[0] = Some(x);
        let mut frozen_ctx = Ctx::eval();
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
                // The last reader of a value that is not an output takes it.
                Op::Layer(l) if last[node.inputs[0]] == i && !kept[node.inputs[0]] => {
                    let x = values[node.inputs[0]]
                        .take()
                        .expect("values are made before use");
                    l.forward_owned(x, c)?
                }
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
                Op::Concat(channels) => {
                    let parts: Vec<_> = node.inputs.iter().map(|&v| get(v).view()).collect();
                    let first = parts[0].shape().to_vec();
                    for p in &parts {
                        let s = p.shape();
                        let fits = s.len() == first.len()
                            && s.len() >= 2
                            && s.iter()
                                .zip(&first)
                                .enumerate()
                                .all(|(a, (x, y))| a == 1 || x == y);
                        if !fits {
                            return Err(Error::shape(
                                format!("inputs of `{}` (Concat)", node.name),
                                format!("shapes that differ only in axis 1, the first {first:?}"),
                                s,
                            ));
                        }
                    }
                    if c.train {
                        *channels = parts.iter().map(|p| p.shape()[1]).collect();
                    }
                    ndarray::concatenate(ndarray::Axis(1), &parts).expect("shapes checked")
                }
            };
            for &v in &node.inputs {
                if last[v] == i && !kept[v] {
                    values[v] = None;
                }
            }
            values[i + 1] = Some(y);
        }
        // An output named twice gets a copy; the rest move out.
        let mut out = Vec::with_capacity(outputs.len());
        for (k, &v) in outputs.iter().enumerate() {
            let again = outputs[k + 1..].contains(&v);
            let t = if again {
                values[v].clone()
            } else {
                values[v].take()
            };
            out.push(t.expect("outputs are kept"));
        }
        Ok(out)
    }

    /// The backward pass of [`Graph::forward_all`] (in training mode): `grads[k]` is the
    /// loss's gradient at output `k` (`None`: the loss does not depend on it). Returns the
    /// gradient at the input.
    pub fn backward_all(&mut self, grads_out: &[Option<Tensor>]) -> Result<Tensor> {
        let shape = crate::module::cached(&self.input_shape, "graph")?.clone();
        let outputs = self.outputs();
        if grads_out.len() != outputs.len() {
            return Err(Error::invalid(
                "graph output gradients",
                format!("{} for {} outputs", grads_out.len(), outputs.len()),
            ));
        }
        let mut grads: Vec<Option<Tensor>> = vec![None; self.nodes.len() + 1];
        for (&v, g) in outputs.iter().zip(grads_out) {
            if let Some(g) = g {
                add_into(&mut grads[v], g.clone());
            }
        }
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
                    add_into(&mut grads[node.inputs[0]], dx);
                }
                Op::Add => {
                    add_into(&mut grads[node.inputs[0]], g.clone());
                    add_into(&mut grads[node.inputs[1]], g);
                }
                Op::Concat(channels) => {
                    if channels.len() != node.inputs.len() {
                        return Err(Error::NoForward(format!("concat `{}`", node.name)));
                    }
                    let mut at = 0;
                    for (&v, &c) in node.inputs.iter().zip(channels.iter()) {
                        let part = g.slice_axis(ndarray::Axis(1), ndarray::Slice::from(at..at + c));
                        add_into(&mut grads[v], part.to_owned());
                        at += c;
                    }
                }
            }
        }
        Ok(grads[0].take().unwrap_or_else(|| Tensor::zeros(shape)))
    }
}

impl Module for Graph {
    /// The graph's one output ([`Graph::forward_all`] for several).
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        self.forward_owned(x.clone(), ctx)
    }

    fn forward_owned(&mut self, x: Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let n = self.outputs().len();
        if n != 1 {
            return Err(Error::invalid(
                "graph",
                format!("it has {n} outputs: run it with forward_all"),
            ));
        }
        Ok(self.forward_all_owned(x, ctx)?.pop().expect("one output"))
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        self.backward_all(&[Some(grad_out.clone())])
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
                Op::Concat(_) => "concat".into(),
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
