// `cubeflow run`, `validate`, `plugins` and `inspect`: the commands over the runtime (core).
#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "run_once.hpp"
#include "survey.hpp"
#include "cubeflow/loader.hpp"
#include "cubeflow/log.hpp"
#include "cubeflow/pipeline.hpp"

namespace cubeflow::tools {
namespace {

std::string KindName(PortKind k) { return k == PortKind::kStream ? "stream" : "single"; }

int CmdPlugins(const Args& a) {
  PluginManager pm;
  pm.LoadSearchPath(PluginManager::DefaultSearchPath());
  if (pm.reports().empty()) {
    std::cout << "no plugins found (search path:";
    for (const auto& d : PluginManager::DefaultSearchPath()) std::cout << " " << d;
    std::cout << ")\n";
  }
  for (const auto& r : pm.reports()) {
    if (!r.ok) continue;
    std::cout << r.name << " " << r.version;
    if (a.verbose) std::cout << "  (" << r.file << ")";
    std::cout << "\n";
    for (const NodeSpec* s : pm.registry().All()) {
      const auto* o = pm.registry().OriginOf(s->name());
      if (!o || o->plugin != r.name) continue;
      char buf[512];
      std::snprintf(buf, sizeof buf, "  %-24s %s\n", s->name().c_str(), s->summary().c_str());
      std::cout << buf;
    }
  }
  for (const auto& r : pm.reports()) {
    if (!r.ok) std::cout << "failed: " << r.file << ": " << r.error << "\n";
  }
  return 0;
}

std::string Wrap(const std::string& text, size_t indent, size_t width = 92) {
  std::istringstream is(text);
  std::string word, line, out;
  while (is >> word) {
    if (!line.empty() && line.size() + 1 + word.size() > width - indent) {
      out += std::string(indent, ' ') + line + "\n";
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
  }
  if (!line.empty()) out += std::string(indent, ' ') + line + "\n";
  return out;
}

int CmdInspect(const Args& a) {
  if (a.positional.size() != 1) {
    std::cerr << "usage: cubeflow inspect NODE_TYPE   (e.g. cubeflow inspect spectral.snr_map)\n";
    return 2;
  }
  PluginManager pm;
  LoadDefaultPlugins(pm);
  const std::string& name = a.positional[0];
  const NodeSpec* s = pm.registry().Find(name);
  if (!s) {
    std::string c = pm.registry().Closest(name);
    std::cerr << "cubeflow: error: unknown node type '" << name << "'" << (c.empty() ? "" : "; did you mean '" + c + "'?")
              << "\n";
    return 1;
  }
  const auto* o = pm.registry().OriginOf(name);
  std::cout << s->name() << " - " << s->summary() << "\n";
  if (o) std::cout << "plugin: " << o->plugin << " " << o->version << " (" << o->file << ")\n";
  if (!s->description().empty()) std::cout << "\n" << Wrap(s->description(), 2);
  std::cout << "\nexecution: " << (s->concurrency() == Concurrency::kSerial ? "serial" : "parallel")
            << (s->IsPerItem() ? ", per item" : ", once per run");
  if (!s->batch_param().empty()) std::cout << ", batched by '" << s->batch_param() << "'";
  if (s->accepts_failures()) std::cout << ", records failed items";
  std::cout << "\n\ninputs:\n";
  if (s->inputs().empty()) std::cout << "  (none: a source)\n";
  for (const auto& p : s->inputs()) {
    std::cout << "  " << p.name << " : " << p.type << " (" << KindName(p.kind) << (p.required ? "" : ", optional")
              << (p.multi ? ", several edges" : "") << ")\n";
    if (!p.doc.empty()) std::cout << Wrap(p.doc, 6);
  }
  std::cout << "\noutputs:\n";
  if (s->outputs().empty()) std::cout << "  (none: a sink)\n";
  for (const auto& p : s->outputs()) {
    std::cout << "  " << p.name << " : " << p.type << " (" << KindName(p.kind) << ")\n";
    if (!p.doc.empty()) std::cout << Wrap(p.doc, 6);
  }
  std::cout << "\nparameters:\n";
  if (s->params().empty()) std::cout << "  (none)\n";
  for (const auto& p : s->params()) {
    std::cout << "  " << p.name() << " : " << ParamTypeName(p.type());
    if (!p.unit().empty()) std::cout << " [" << p.unit() << "]";
    if (p.required()) {
      std::cout << ", required";
    } else {
      std::string d = FormatValue(p.default_value());
      std::cout << ", default " << (d.empty() ? "\"\"" : d);
    }
    if (p.min() || p.max()) {
      std::cout << ", range " << (p.min() ? FormatValue(*p.min()) : "-inf") << " .. "
                << (p.max() ? FormatValue(*p.max()) : "inf");
    }
    if (!p.choices().empty()) {
      std::cout << ", one of {";
      for (size_t i = 0; i < p.choices().size(); ++i) std::cout << (i ? ", " : "") << p.choices()[i];
      std::cout << "}";
    }
    std::cout << "\n";
    if (!p.doc().empty()) std::cout << Wrap(p.doc(), 6);
  }
  return 0;
}

int CmdValidate(const Args& a) {
  if (a.positional.size() != 1) {
    std::cerr << "usage: cubeflow validate FILE [--set NODE.PARAM=VALUE ...]\n";
    return 2;
  }
  if (!a.manifest.empty()) {  // every cube of a survey, with its values
    survey::Survey s;
    if (int rc = survey::Init(a, s, std::cerr)) return rc;
    if (int rc = survey::Validate(s, std::cerr, false)) return rc;
    int failed = 0;
    for (size_t i = 0; i < s.results.size(); ++i) {
      const auto& r = s.results[i];
      std::cout << r.name << ": " << (r.status == "failed" ? "error: " + r.error : std::string("ok")) << "\n";
      failed += r.status == "failed";
    }
    return failed ? 1 : 0;
  }
  PluginManager pm;
  auto pl = LoadForRun(a, pm, std::cerr);
  if (pl)
    std::cout << a.positional[0] << ": ok (" << pl->nodes.size() << " nodes, " << pl->edges.size() << " edges)\n";
  return pl ? 0 : 1;
}

int CmdRun(const Args& a) {
  if (!a.manifest.empty()) return survey::RunLocal(a);
  if (a.jobs != 1 || !a.summary.empty() || a.allow_failed || !a.cubes.empty() || !a.rows.empty()) {
    std::cerr << "cubeflow: error: --jobs, --summary, --allow-failed, --cube and --only-row need --manifest\n";
    return 2;
  }
  if (a.positional.size() != 1) {
    std::cerr << "usage: cubeflow run FILE [--set NODE.PARAM=VALUE ...] [--threads N] [--allow-empty] [-v]\n";
    return 2;
  }
  return RunOnce(a, std::cerr).exit_code;
}

/// Parses the options of run/validate/plugins/inspect (argv[0] is the command), sets the log
/// level and runs `body`; usage errors exit 2, failures 1.
int WithArgs(int argc, char** argv, int (*body)(const Args&)) {
  Args a;
  std::string err;
  if (!ParseArgs(argc, argv, 1, a, err)) {
    std::cerr << "cubeflow: error: " << err << "\n" << Usage();
    return 2;
  }
  if (a.help) {
    std::cout << Usage();
    return 0;
  }
  SetLogLevel(a.verbose >= 2 ? LogLevel::kDebug : a.verbose == 1 ? LogLevel::kInfo : LogLevel::kWarn);
  return body(a);
}

}  // namespace

int RunCommand(int argc, char** argv) { return WithArgs(argc, argv, CmdRun); }
int ValidateCommand(int argc, char** argv) { return WithArgs(argc, argv, CmdValidate); }
int PluginsCommand(int argc, char** argv) { return WithArgs(argc, argv, CmdPlugins); }
int InspectCommand(int argc, char** argv) { return WithArgs(argc, argv, CmdInspect); }

}  // namespace cubeflow::tools
