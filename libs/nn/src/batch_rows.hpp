#pragma once
// Internal (not installed): batch-independent results of the CNN and SBI networks.
//
// A batch of one row goes through BLAS as a matrix-vector product, whose sums run in another
// order than the matrix-matrix products of larger batches: a bin's result would then depend, in
// its last bits, on whether it happened to be batched alone -- as a bin left over in a resumed
// run is (issue #17: a resumed run must write the product an uninterrupted one writes). Two
// copies of the row keep it on the batched path; larger batches give the same bits whatever
// their size (checked by Pipelines.ResumeAfterSigkillGivesTheSameProduct).

#include <torch/torch.h>

namespace cubeflow::nn {

/// `x` itself, or for a single row two copies of it (take row 0 of the result).
inline torch::Tensor AtLeastTwoRows(const torch::Tensor& x) {
  return x.size(0) == 1 ? torch::cat({x, x}, 0) : x;
}

}  // namespace cubeflow::nn
