//! Symmetric eigendecompositions (through `nalgebra`) and the matrix functions built on
//! them.

use ndarray::{Array1, Array2};

/// Eigenvalues (ascending) and eigenvectors (columns) of a symmetric matrix.
pub fn sym_eigen(a: &Array2<f64>) -> (Array1<f64>, Array2<f64>) {
    let n = a.nrows();
    let m = nalgebra::DMatrix::from_fn(n, n, |i, j| 0.5 * (a[[i, j]] + a[[j, i]]));
    let e = nalgebra::SymmetricEigen::new(m);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| e.eigenvalues[i].total_cmp(&e.eigenvalues[j]));
    let values = order.iter().map(|&i| e.eigenvalues[i]).collect();
    let vectors = Array2::from_shape_fn((n, n), |(r, c)| e.eigenvectors[(r, order[c])]);
    (values, vectors)
}

/// `A^power` of a symmetric positive semi-definite matrix, eigenvalues below `floor`
/// raised to it.
pub fn sym_power(a: &Array2<f64>, power: f64, floor: f64) -> Array2<f64> {
    let (values, vectors) = sym_eigen(a);
    let scaled = Array2::from_shape_fn(vectors.raw_dim(), |(r, c)| {
        vectors[[r, c]] * values[c].max(floor).powf(power)
    });
    scaled.dot(&vectors.t())
}

/// Solves `A x = b` by Gaussian elimination with partial pivoting; `None` when `A` is
/// singular to working precision.
pub fn solve(a: &Array2<f64>, b: &Array1<f64>) -> Option<Array1<f64>> {
    let n = a.nrows();
    let mut m = a.clone();
    let mut x = b.clone();
    let scale = a.iter().fold(0.0f64, |s, v| s.max(v.abs())).max(1e-300);
    for col in 0..n {
        let piv = (col..n).max_by(|&i, &j| m[[i, col]].abs().total_cmp(&m[[j, col]].abs()))?;
        if m[[piv, col]].abs() <= 1e-12 * scale {
            return None;
        }
        if piv != col {
            for c in 0..n {
                m.swap([piv, c], [col, c]);
            }
            x.swap(piv, col);
        }
        for r in col + 1..n {
            let f = m[[r, col]] / m[[col, col]];
            if f != 0.0 {
                for c in col..n {
                    m[[r, c]] -= f * m[[col, c]];
                }
                x[r] -= f * x[col];
            }
        }
    }
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|c| m[[r, c]] * x[c]).sum();
        x[r] = (x[r] - s) / m[[r, r]];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: f64 = 1e-9;

    #[test]
    fn eigen_reconstructs_and_powers_compose() {
        let b = Array2::from_shape_fn((6, 6), |(i, j)| ((i * 7 + j * 3) % 11) as f64 / 5.0);
        let a = b.t().dot(&b) + Array2::<f64>::eye(6);
        let (values, vectors) = sym_eigen(&a);
        let back = (&vectors * &values).dot(&vectors.t());
        assert!((&back - &a).iter().all(|v| v.abs() < TOL));
        assert!(values.windows(2).into_iter().all(|w| w[0] <= w[1]));
        let half = sym_power(&a, 0.5, 0.0);
        let inv_half = sym_power(&a, -0.5, 0.0);
        assert!((&half.dot(&half) - &a).iter().all(|v| v.abs() < TOL));
        let eye = half.dot(&inv_half);
        assert!(
            (&eye - &Array2::<f64>::eye(6))
                .iter()
                .all(|v| v.abs() < TOL)
        );
    }

    #[test]
    fn solve_matches_the_product() {
        let a = ndarray::array![[0.0, 2.0, 1.0], [1.0, 1.0, 0.0], [3.0, 0.0, 1.0]];
        let x = ndarray::array![1.0, -2.0, 0.5];
        let got = solve(&a, &a.dot(&x)).expect("regular");
        assert!((&got - &x).iter().all(|v| v.abs() < TOL));
        assert!(
            solve(
                &ndarray::array![[1.0, 2.0], [2.0, 4.0]],
                &ndarray::array![1.0, 2.0]
            )
            .is_none()
        );
    }
}
