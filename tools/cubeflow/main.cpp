// The cubeflow command: dispatches to the sub-command table of this build (commands.hpp).
#include <cstring>
#include <exception>
#include <iostream>
#include <string>

#include "commands.hpp"
#include "cubeflow/plugin.hpp"
#include "cubeflow/version.hpp"
// Declarations of the entry points that live in libraries (written at configure time).
#include "command_decls.inc"

namespace cubeflow::tools {

namespace {

int VersionCommand(int, char**) {
  std::cout << "cubeflow " << kVersion << " (plugin API " << kPluginApiVersion << ")\n";
  return 0;
}

const Command kCommands[] = {
    {"run", "run FILE", "validate and run a pipeline", RunCommand},
    {"validate", "validate FILE", "check a pipeline and report every problem (file:line:col)", ValidateCommand},
    {"plugins", "plugins", "list plugins and the node types they provide", PluginsCommand},
    {"inspect", "inspect NODE", "print a node type's ports and parameters", InspectCommand},
#include "command_table.inc"
    {"version", "version", "print the version", VersionCommand},
};

}  // namespace

const Command* Commands(size_t* count) {
  *count = sizeof kCommands / sizeof kCommands[0];
  return kCommands;
}

std::string Usage() {
  std::string s = "usage: cubeflow <command> [options]\n\ncommands:\n";
  size_t n = 0;
  const Command* c = Commands(&n);
  for (size_t i = 0; i < n; ++i) {
    std::string u = c[i].usage;
    if (u.size() < 22) u += std::string(22 - u.size(), ' ');
    s += "  " + u + " " + c[i].summary + "\n";
  }
  s +=
      "\n"
      "options for run/validate:\n"
      "  --set NODE.PARAM=VALUE   override a parameter (repeatable; VALUE in YAML syntax)\n"
      "  --threads N              cap parallelism (default: all cores)\n"
      "  --max-in-flight N        stream items alive at once per source (default: automatic)\n"
      "  --no-progress            no progress line on the terminal\n"
      "  --allow-empty            run: a product in which every bin failed is not an error\n"
      "  --resume                 run: take the per-bin results a killed or failed run left in\n"
      "                           its checkpoints; compute only what is missing\n"
      "  --checkpoint-dir DIR     run: where checkpoints are kept (default: .cubeflow-checkpoints/\n"
      "                           <pipeline> beside the first product; removed after a success)\n"
      "  --no-checkpoint          run: keep no checkpoints\n"
      "  --allow-special-outputs  outputs may be existing devices or FIFOs (refused by default)\n"
      "  -v, -vv                  verbose / debug logging (quiet by default)\n"
      "\n"
      "survey mode (docs/survey.md; `mpirun cubeflow-mpi` takes the same options):\n"
      "  --manifest CUBES.tsv     run: once per cube of this manifest (a header line, then one\n"
      "                           cube per line: name, ${VAR} values, NODE.PARAM overrides);\n"
      "                           validate: check every cube\n"
      "  --jobs N                 cubes at once, one process each (default 1)\n"
      "  --summary PATH           the summary TSV (default MANIFEST_STEM.summary.tsv; logs in\n"
      "                           MANIFEST_STEM.summary.logs/)\n"
      "  --cube NAME, --only-row K  run only these cubes (K = 1 for the first data line)\n"
      "  --allow-failed           exit 0 if at least one cube gave a usable product\n"
      "\n"
      "run exits 0 on success, 1 on failure or when no product holds a usable result, 2 on a\n"
      "usage error, 128+N when stopped by signal N (SIGINT: 130, SIGTERM: 143; partial products\n"
      "are written beside the earlier ones, which are kept). With --manifest: 0 if every cube gave\n"
      "a usable product, 1 if not, 2 if the manifest is refused (nothing runs).\n"
      "\n"
      "`cubeflow COMMAND --help` describes a command's own options. Plugins are searched in the\n"
      "installed plugin directory, then CUBEFLOW_PLUGIN_PATH (colon-separated), then the\n"
      "pipeline's 'plugins:' entries.\n";
  return s;
}

}  // namespace cubeflow::tools

int main(int argc, char** argv) {
  using namespace cubeflow::tools;
  if (argc < 2) {
    std::cerr << Usage();
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    std::cout << Usage();
    return 0;
  }
  if (cmd == "--version") cmd = "version";
  size_t n = 0;
  const Command* table = Commands(&n);
  for (size_t i = 0; i < n; ++i) {
    if (cmd != table[i].name) continue;
    try {
      return table[i].main(argc - 1, argv + 1);
    } catch (const std::exception& e) {
      std::cerr << "cubeflow " << cmd << ": error: " << e.what() << "\n";
      return 1;
    }
  }
  std::cerr << "cubeflow: error: unknown command '" << cmd << "'\n" << Usage();
  return 2;
}
