#pragma once
/// \file survey.hpp
/// \brief Survey mode (docs/survey.md): one pipeline over a manifest of cubes. The manifest is
/// read and every cube validated up front; each cube then runs in a child process of its own
/// (crash isolation, a per-cube peak RSS), exactly as `cubeflow run` with the cube's variables
/// and overrides. `cubeflow run --manifest` schedules the children on one machine;
/// `cubeflow-mpi` hands cubes to MPI ranks, which run them the same way.

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "run_once.hpp"

namespace cubeflow::tools::survey {

/// One data line of a manifest.
struct Cube {
  int line = 0;                                ///< line number in the manifest file
  std::string name;                            ///< column `name`
  std::vector<std::pair<std::string, std::string>> vars;  ///< ${VAR} columns (upper case)
  std::vector<std::string> sets;               ///< node.param columns, as "node.param=value"
};

/// A parsed manifest.
struct Manifest {
  std::string file;
  std::vector<std::string> columns;
  std::vector<Cube> cubes;
};

/// Reads a manifest (TSV: a header naming the columns, then one cube per line; '#' comments and
/// blank lines skipped). Any malformed line, duplicate name or bad column is reported as
/// "FILE:LINE: message" in `errors` (all of them); the result is valid only if `errors` is empty.
Manifest ReadManifest(const std::string& path, std::vector<std::string>& errors);

/// The state of one cube in the summary.
struct CubeResult {
  std::string name;
  std::string status = "pending";  ///< pending, running, ok, usable-partial, failed
  int64_t bins = 0, usable = 0;
  double wall_seconds = 0;
  double peak_rss_mb = 0;
  int exit_code = -1;
  std::string host;                ///< where it ran (host, and rank under MPI)
  std::string products;            ///< comma-separated
  std::string log;                 ///< the cube's own log (its `cubeflow run` output)
  std::string error;
};

/// A survey being run: the manifest, the options, the state of every cube.
struct Survey {
  Args args;                       ///< the command's options (positional[0] is the pipeline)
  Manifest manifest;
  std::vector<size_t> selected;    ///< indices into manifest.cubes that this survey runs
  std::vector<CubeResult> results; ///< one per selected cube
  std::string summary_path, log_dir;
  int threads_per_cube = 0;        ///< --threads, else the cores / --jobs (0: all cores)
  struct Child {
    pid_t pid = -1;
    int fd = -1;                   ///< the pipe the child reports its outcome on
    double start = 0;              ///< seconds (steady clock)
  };
  std::vector<Child> children;     ///< per cube, while it runs
};

/// Reads the manifest and the selection (--cube, --only-row) and fixes the summary and log
/// paths; validates nothing else. Returns 0, or 2 with the messages on `err`.
int Init(const Args& args, Survey& s, std::ostream& err);

/// Validates every selected cube with its variables and overrides: a cube whose pipeline does
/// not validate or names a missing input file is marked failed (the others go on); two cubes
/// writing the same product, or one writing another's input, refuse the whole survey (2).
/// With `write_logs`, a failed cube's messages go to its log. Returns 0 if the survey can run,
/// 2 (messages on `err`) if not.
int Validate(Survey& s, std::ostream& err, bool write_logs = true);

/// Starts cube `i` (an index into s.results) in a child process (stdout and stderr to its log);
/// returns its pid, or -1 (the cube is marked failed). `host` is recorded in the summary.
pid_t StartCube(Survey& s, size_t i, const std::string& host);
/// Waits for any child of this survey (blocking unless `nohang`) and records its result.
/// Returns the cube's index, or -1 if none finished (nohang, or interrupted by a signal).
long WaitCube(Survey& s, bool nohang);

/// Writes the summary TSV atomically to s.summary_path (after every finished cube).
void WriteSummary(const Survey& s, std::ostream& err);
/// The summary as an aligned table, for stdout.
std::string FormatSummary(const Survey& s);
/// One line "[k/n] NAME status ..." when a cube finishes.
std::string FormatProgress(const Survey& s, size_t i);
/// The exit status of a finished survey: 0 if every cube gave a usable product (or
/// --allow-failed and at least one did), 1 otherwise.
int ExitStatus(const Survey& s);

/// Serialises cube i's result into one string (for MPI messages) and back (returns i, -1 if malformed).
std::string Encode(const Survey& s, size_t i);
long Decode(Survey& s, const std::string& text);

/// `cubeflow run PIPELINE --manifest FILE [--jobs N]`: runs the survey on this machine.
int RunLocal(const Args& args);

}  // namespace cubeflow::tools::survey
