#pragma once
/// \file run_once.hpp
/// \brief `cubeflow run FILE` as a function: the options of run/validate, loading a pipeline with
/// the default plugins, and one validated run with its exit status. Shared by the `cubeflow`
/// command (one pipeline or a survey) and by `cubeflow-mpi`, so that a cube of a survey is run
/// exactly as `cubeflow run` runs it.

#include <atomic>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "cubeflow/loader.hpp"
#include "cubeflow/pipeline.hpp"

namespace cubeflow::tools {

/// The options of run/validate/plugins/inspect (and of a survey: --manifest and the rest).
struct Args {
  std::vector<std::string> positional;
  std::vector<std::string> sets;
  int threads = 0;
  int64_t max_in_flight = 0;
  bool progress = true;
  int verbose = 0;
  bool help = false;
  bool allow_empty = false;            ///< run: a product with no usable bin is not an error
  bool resume = false;                 ///< run: take per-item results from the checkpoints
  bool checkpoint = true;              ///< run: keep checkpoints of checkpointed nodes
  std::string checkpoint_dir;          ///< run: where ("" = beside the first product)
  bool allow_special_outputs = false;  ///< run/validate: outputs may be devices or FIFOs
  // Survey mode (docs/survey.md).
  std::string manifest;                ///< run: one run per line of this TSV
  int jobs = 1;                        ///< run --manifest: cubes at once (one process each)
  std::string summary;                 ///< run --manifest: the summary table ("" = default)
  bool allow_failed = false;           ///< run --manifest: exit 0 even if some cubes failed
  std::vector<std::string> cubes;      ///< run --manifest: only these cubes (by name)
  std::vector<int64_t> rows;           ///< run --manifest: only these data rows (1 = first)
  std::string checkpoint_leaf;         ///< a cube's own subdirectory of the checkpoint directory
};

/// Parses argv[start..argc); false with `err` set on a usage error.
bool ParseArgs(int argc, char** argv, int start, Args& a, std::string& err);

/// Loads the plugins of the default search path into `pm` (failures logged as warnings).
void LoadDefaultPlugins(PluginManager& pm);

/// Loads and validates a.positional[0] with a.sets; every diagnostic goes to `err`, then
/// "FILE: N errors" if it failed. `first_error` (if given) receives the first error, formatted.
std::optional<Pipeline> LoadForRun(const Args& a, PluginManager& pm, std::ostream& err,
                                   std::string* first_error = nullptr);

/// Where a run keeps its checkpoints: --checkpoint-dir, else `.cubeflow-checkpoints/<pipeline>`
/// beside the first product the pipeline writes (beside the pipeline file if it writes none).
std::string CheckpointDir(const Args& a, const Pipeline& pl);

/// The output paths (path parameters marked as outputs) and input paths (the other path
/// parameters) a validated pipeline names, in pipeline order, as "nodes.NODE.PARAM" + path.
struct PathUse {
  std::string where, path;
};
void PipelinePaths(const Pipeline& pl, std::vector<PathUse>* outputs, std::vector<PathUse>* inputs);

/// What one run did.
struct RunOutcome {
  int exit_code = 1;                   ///< as `cubeflow run` exits (0, 1, 2, 128+signal)
  std::string error;                   ///< the first error, one line ("" on success)
  int64_t bins = 0, usable = 0;        ///< of the first product
  std::vector<std::string> products;   ///< every product written (pipeline order)
};

/// \brief Validates and runs a.positional[0] exactly as `cubeflow run`: messages (diagnostics,
/// the runner's table, errors) go to `err`. SIGINT/SIGTERM stop the run (partial products).
RunOutcome RunOnce(const Args& a, std::ostream& err);

}  // namespace cubeflow::tools
