// libFuzzer target: pipeline files (cubeflow::LoadPipelineFromString: YAML syntax, structure,
// node types, parameter binding and conversion, validation hooks, edges, output-path checks).
//
// Every input is validated twice: against a registry holding the in-tree plugins (loaded once
// from the build's plugin directory) and against a fresh manager with no plugins whose search
// path is an empty directory. Lines at the very top of the form `#set node.param=value` (YAML
// comments) become `--set` overrides. Properties checked besides "no crash, leak or sanitizer
// report": a refused pipeline has at least one error, and every diagnostic names the pipeline
// (or the --set it came from) and says something.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cubeflow/loader.hpp"
#include "cubeflow/log.hpp"
#include "cubeflow/pipeline.hpp"
#include "fuzz_support.hpp"

namespace {

const char* kName = "fuzz.yaml";
cubeflow::PluginManager* g_plugins = nullptr;
std::string g_empty_dir;  // base directory and search path of the plugin-less manager

void Fail(const std::string& what, const std::string& yaml) {
  std::fprintf(stderr, "fuzz_pipeline_yaml: %s\n--- input ---\n%s\n---\n", what.c_str(), yaml.c_str());
  std::abort();
}

void Check(const std::string& yaml, const std::vector<std::string>& overrides, cubeflow::PluginManager& pm) {
  std::vector<cubeflow::Diagnostic> diags;
  const auto pl = cubeflow::LoadPipelineFromString(yaml, kName, g_empty_dir, overrides, pm, diags);
  bool any_error = false;
  for (const auto& d : diags) {
    any_error |= d.is_error;
    if (d.message.empty()) Fail("a diagnostic without a message: " + d.Format(), yaml);
    if (d.loc.file != kName && d.loc.file.rfind("--set ", 0) != 0)
      Fail("a diagnostic that does not name the pipeline file: " + d.Format(), yaml);
    (void)d.Format();
  }
  if (!pl && !any_error) Fail("the pipeline was refused without an error", yaml);
  if (pl) {
    if (pl->nodes.empty()) Fail("an accepted pipeline without nodes", yaml);
    for (const auto& n : pl->nodes)
      if (!n.spec) Fail("an accepted node without a spec: " + n.name, yaml);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  cubeflow::SetLogLevel(cubeflow::LogLevel::kError);
  g_empty_dir = cubeflow::fuzz::MakeTempDir();
  g_plugins = new cubeflow::PluginManager();  // lives as long as the process
  g_plugins->LoadSearchPath({CUBEFLOW_FUZZ_PLUGIN_DIR});
  if (g_plugins->registry().All().empty() || !g_plugins->Failures().empty()) {
    std::fprintf(stderr, "fuzz_pipeline_yaml: the in-tree plugins in %s did not load\n", CUBEFLOW_FUZZ_PLUGIN_DIR);
    for (const auto& f : g_plugins->Failures()) std::fprintf(stderr, "  %s: %s\n", f.file.c_str(), f.error.c_str());
    std::abort();
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string yaml = cubeflow::fuzz::AsText(data, size);
  std::vector<std::string> overrides;
  size_t pos = 0;
  while (yaml.compare(pos, 5, "#set ") == 0) {
    const size_t end = yaml.find('\n', pos);
    overrides.push_back(yaml.substr(pos + 5, end == std::string::npos ? std::string::npos : end - pos - 5));
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  Check(yaml, overrides, *g_plugins);
  cubeflow::PluginManager none;
  none.LoadSearchPath({g_empty_dir});
  Check(yaml, overrides, none);
  return 0;
}
