// A fixture plugin whose node declares its parameters once, bound to an options struct, with a
// validation hook (NodeSpec::Check): the validator must report the hook's errors at file:line:col.
#include <filesystem>
#include <string>

#include "cubeflow/plugin.hpp"

namespace checks {
using namespace cubeflow;

// A node whose parameters are bound to an options struct, with a validation hook: passes items
// whose v lies in [lo, hi).
struct WindowOptions {
  double lo = 0.0;
  double hi = 10.0;
  std::string mode = "keep";
};

class Window : public Node {
 public:
  using Options = WindowOptions;
  static NodeSpec Spec() {
    return NodeSpec("checks.window", "Keeps (or drops) the items whose v lies in [lo, hi)")
        .Input("in", "record", PortKind::kStream, "records with field v")
        .Output("out", "record", PortKind::kStream, "the records kept")
        .Param(&WindowOptions::lo, "lo", "lower edge", Unit{"v"})
        .Param(&WindowOptions::hi, "hi", "upper edge", Unit{"v"}, AtMost{1e6})
        .Param(&WindowOptions::mode, "mode", "keep or drop the items inside", OneOf{{"keep", "drop"}})
        .Check<WindowOptions>([](const WindowOptions& o, CheckReport& r) {
          if (!(o.lo < o.hi))
            r.Error("hi", "must be above lo (lo " + std::to_string(o.lo) + ", hi " + std::to_string(o.hi) + ")");
          if (o.hi - o.lo > 1e5) r.Warn("lo", "a window wider than 1e5 keeps everything");
        });
  }
  explicit Window(const WindowOptions& o) : o_(o) {}
  void Process(ProcessContext& ctx) override {
    auto in = ctx.Input<Record>("in");
    const double v = in->fields.at("v").values.at(0);
    const bool inside = v >= o_.lo && v < o_.hi;
    if (inside == (o_.mode == "keep")) ctx.Emit("out", in);
  }

 private:
  WindowOptions o_;
};

// A node that copies a text file: one input path and one output path (for the validator's
// "inputs are sacred" checks).
struct CopyOptions {
  std::filesystem::path from;
  std::filesystem::path to;
};

class Copy : public Node {
 public:
  using Options = CopyOptions;
  static NodeSpec Spec() {
    return NodeSpec("checks.copy", "Copies a file")
        .Param(&CopyOptions::from, "from", "file to read", Required{})
        .Param(&CopyOptions::to, "to", "file to write", Required{}, OutputFile{});
  }
  explicit Copy(const CopyOptions& o) : o_(o) {}
  void Process(ProcessContext&) override { std::filesystem::copy_file(o_.from, o_.to); }

 private:
  CopyOptions o_;
};

void Register(Registry& r) {
  r.Add<Window>();
  r.Add<Copy>();
}

}  // namespace checks

CUBEFLOW_PLUGIN(checks, "0.1.0", checks::Register)
