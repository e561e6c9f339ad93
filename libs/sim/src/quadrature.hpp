#pragma once
// Quadrature rules shared by the forward models of libs/sim (internal header).
#include <vector>

namespace cubeflow::sim::internal {

/// Gauss-Legendre nodes and weights on [-1, 1] for n = 1..4 (n > 4 gives the 4-point rule).
inline void GaussLegendre(int n, std::vector<double>* x, std::vector<double>* w) {
  switch (n) {
    case 1: *x = {0.0}; *w = {2.0}; break;
    case 2: *x = {-0.5773502691896257, 0.5773502691896257}; *w = {1.0, 1.0}; break;
    case 3: *x = {-0.7745966692414834, 0.0, 0.7745966692414834};
            *w = {0.5555555555555556, 0.8888888888888888, 0.5555555555555556}; break;
    default: *x = {-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526};
             *w = {0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538};
  }
}

}  // namespace cubeflow::sim::internal
