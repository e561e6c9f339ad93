#pragma once
// Internal (not installed): the thread pools libtorch computes with. No libtorch here; defined
// in cnn_model.cpp.

namespace cubeflow::nn {

/// Sets libtorch's intra-op threads and, when libtorch uses OpenBLAS, OpenBLAS's own pool (which
/// at::set_num_threads does not control and which otherwise uses every core: under load its
/// spinning threads made sampling several times slower, see docs/sbi.md). Only when `threads` >
/// 0 and differs from the current value. Process-wide.
void SetThreads(int threads);

/// For training: `threads` > 0 as SetThreads; 0 sets OpenBLAS's pool to libtorch's intra-op
/// thread count. OpenBLAS's kernels (e.g. OPENBLAS_CORETYPE=Haswell) sum in another order on
/// another number of threads, so a training whose OpenBLAS pool followed the environment or an
/// earlier call in the process could not be resumed exactly (issue #17).
void SetTrainingThreads(int threads);

/// libtorch's intra-op thread count.
int Threads();

}  // namespace cubeflow::nn
