#pragma once
/// \file pipeline.hpp
/// \brief Pipeline files: parsing, parameter binding and validation.
///
/// \code{.yaml}
///   cubeflow: 1                      # file format version
///   plugins: [my_plugin]             # optional extra plugins (names or paths)
///   settings: {max_in_flight: 256, on_error: stop}
///   nodes:
///     read: {type: io.read_cube, path: cube.fits}
///     snr:  {type: spectral.snr_map, wave_min: 5300}
///   edges:
///     - read.cube -> snr.cube
/// \endcode
/// Validation reports every problem in one pass as `file:line:col: error: message`.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cubeflow/loader.hpp"
#include "cubeflow/spec.hpp"

namespace cubeflow {

/// \brief A position in a pipeline file (1-based), or a command-line origin.
struct SourceLoc {
  std::string file;
  int line = 0, column = 0;
};

/// \brief One validation problem.
struct Diagnostic {
  SourceLoc loc;
  bool is_error = true;
  std::string message;
  std::string note;  ///< optional second line (e.g. the list of valid parameters)
  /// "file:line:col: error: message" (+ "\n    note").
  std::string Format() const;
};

struct PipelineNode {
  std::string name;
  std::string type;
  const NodeSpec* spec = nullptr;
  Params params;
  SourceLoc loc;
};

struct PipelineEdge {
  std::string from_node, from_port, to_node, to_port;
  SourceLoc loc;
};

/// \brief Run-wide settings from the `settings:` block.
struct PipelineSettings {
  int64_t max_in_flight = 0;      ///< stream items in flight per source (0: automatic)
  std::string on_error = "stop";  ///< "stop": first failure stops the run; "flag": failed bins are flagged and the run goes on
};

/// \brief A validated pipeline, ready to run.
struct Pipeline {
  std::string file;
  int version = 1;
  std::vector<std::string> plugins;
  PipelineSettings settings;
  std::vector<PipelineNode> nodes;  ///< in topological order
  std::vector<PipelineEdge> edges;
  const PipelineNode* FindNode(const std::string& name) const;
};

/// \brief How strict loading is.
struct LoadOptions {
  /// Accept outputs that are existing non-regular files (devices, FIFOs): `--allow-special-outputs`.
  bool allow_special_outputs = false;
};

/// \brief Parses a pipeline file, loads its `plugins:` into `plugins`, applies `--set` overrides
/// ("node.param=value", value in YAML syntax) and validates everything. Returns the pipeline
/// if there was no error; all diagnostics (errors and warnings) are appended to `diags`.
std::optional<Pipeline> LoadPipeline(const std::string& path, const std::vector<std::string>& overrides,
                                     PluginManager& plugins, std::vector<Diagnostic>& diags,
                                     const LoadOptions& options = {});
/// Same, from YAML text; `name` is used in messages and relative paths resolve against `base_dir`.
std::optional<Pipeline> LoadPipelineFromString(const std::string& yaml_text, const std::string& name,
                                               const std::string& base_dir,
                                               const std::vector<std::string>& overrides,
                                               PluginManager& plugins, std::vector<Diagnostic>& diags,
                                               const LoadOptions& options = {});

}  // namespace cubeflow
