#pragma once
/// \file commands.hpp
/// \brief The sub-commands of the `cubeflow` executable.
///
/// Every sub-command is an entry point `int F(int argc, char** argv)` (argv[0] is the
/// sub-command's name) listed in one table. The table is written at configure time
/// (tools/cubeflow/CMakeLists.txt -> command_table.inc) from the libraries this build has:
/// `train` and `evaluate` exist only with libs/nn (libtorch). No weak symbols, no plugin code.

#include <string>

namespace cubeflow::tools {

/// One sub-command: its name, the usage line and one-line summary for `cubeflow --help`.
struct Command {
  const char* name;
  const char* usage;
  const char* summary;
  int (*main)(int argc, char** argv);
};

/// The commands of this build, in the order `cubeflow --help` lists them.
const Command* Commands(size_t* count);
/// The text of `cubeflow --help`.
std::string Usage();

// Commands over the runtime (pipeline_cmds.cpp).
int RunCommand(int argc, char** argv);
int ValidateCommand(int argc, char** argv);
int PluginsCommand(int argc, char** argv);
int InspectCommand(int argc, char** argv);
// Science commands (one file each).
int SimulateCommand(int argc, char** argv);  // simulate_cmd.cpp (libs/sim)
int CompareCommand(int argc, char** argv);   // compare_cmd.cpp (libs/fits)
int PlotCommand(int argc, char** argv);      // plot_cmd.cpp (libs/plot)
int DigsCommand(int argc, char** argv);      // digs_cmd.cpp (libs/sim, libs/sampling)

}  // namespace cubeflow::tools
