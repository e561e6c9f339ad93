// A real, tiny plugin used by the runtime tests: sources, per-item transforms, joins,
// batches and a sink that writes what it saw to a text file.
#include <algorithm>
#include <chrono>
#include <thread>
#include <atomic>
#include <fstream>
#include <map>
#include <mutex>

#include "cubeflow/plugin.hpp"

namespace testkit {
using namespace cubeflow;

// Counts live payloads produced by testkit.numbers, to check flow control.
std::atomic<int64_t> g_alive{0};
std::atomic<int64_t> g_max_alive{0};

class CountedRecord : public Record {
 public:
  CountedRecord() {
    int64_t a = ++g_alive;
    int64_t m = g_max_alive.load();
    while (a > m && !g_max_alive.compare_exchange_weak(m, a)) {}
  }
  ~CountedRecord() override { --g_alive; }
};

double ValueOf(const Record& r) { return r.fields.at("v").values.at(0); }

std::shared_ptr<Record> MakeRecord(int64_t id, double v) {
  auto r = std::make_shared<Record>();
  r->id = id;
  r->Set("v", v);
  return r;
}

class NumbersSource : public StreamSource {
 public:
  NumbersSource(int64_t n, int64_t fail_at, int64_t delay_us) : n_(n), fail_at_(fail_at), delay_us_(delay_us) {}
  bool Next(int64_t& key, std::shared_ptr<const Data>& data) override {
    if (i_ >= n_) return false;
    if (delay_us_ > 0) std::this_thread::sleep_for(std::chrono::microseconds(delay_us_));
    if (i_ == fail_at_) throw Error("source broke at item " + std::to_string(i_));
    auto r = std::make_shared<CountedRecord>();
    r->id = i_;
    r->Set("v", static_cast<double>(i_));
    key = i_++;
    data = r;
    return true;
  }
  int64_t SizeHint() const override { return n_; }

 private:
  int64_t n_, fail_at_, delay_us_, i_ = 0;
};

class Numbers : public Node {
 public:
  static NodeSpec Spec() {
    return NodeSpec("testkit.numbers", "Streams records v = 0 .. count-1")
        .Output("items", "record", PortKind::kStream, "one record per item")
        .Output("meta", "record", PortKind::kSingle, "a record with v = count")
        .Output("grid", "map", PortKind::kSingle, "never emitted; for type-mismatch tests")
        .Param(ParamSpec::Int("count", 10).Min(0).Doc("number of items"))
        .Param(ParamSpec::Int("fail_at", -1).Doc("throw when producing this item (-1: never)"))
        .Param(ParamSpec::Double("ratio", 0.5).Range(0, 1).Unit("dimensionless").Doc("unused; for range tests"))
        .Param(ParamSpec::String("mode", "fast").Choices({"fast", "slow"}).Doc("unused; for choice tests"))
        .Param(ParamSpec::Bool("emit_meta", true).Doc("emit the meta record (false: for missing-input tests)"))
        .Param(ParamSpec::Int("delay_us", 0).Min(0).Doc("sleep this long before each item (for interruption tests)"));
  }
  explicit Numbers(const Params& p)
      : n_(p.GetInt("count")), fail_at_(p.GetInt("fail_at")), delay_us_(p.GetInt("delay_us")),
        emit_meta_(p.GetBool("emit_meta")) {}
  void Process(ProcessContext& ctx) override {
    if (emit_meta_) ctx.Emit("meta", MakeRecord(-1, static_cast<double>(n_)));
    ctx.EmitStream("items", std::make_shared<NumbersSource>(n_, fail_at_, delay_us_));
  }

 private:
  int64_t n_, fail_at_, delay_us_;
  bool emit_meta_;
};

class Scale : public Node {
 public:
  static NodeSpec Spec() {
    return NodeSpec("testkit.scale", "Multiplies v by a factor")
        .Input("in", "record", PortKind::kStream, "items")
        .Output("out", "record", PortKind::kStream, "scaled items")
        .Param(ParamSpec::Double("factor", 1.0).Doc("multiplier"))
        .Param(ParamSpec::Int("fail_on", -1).Doc("throw on this key (-1: never)"))
        .Param(ParamSpec::Int("sleep_ms", 0).Doc("sleep this long per item (calls that overlap)"));
  }
  explicit Scale(const Params& p)
      : f_(p.GetDouble("factor")), fail_on_(p.GetInt("fail_on")), sleep_ms_(p.GetInt("sleep_ms")) {}
  void Process(ProcessContext& ctx) override {
    if (ctx.key() == fail_on_) throw Error("asked to fail");
    if (sleep_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms_));
    auto in = ctx.Input<Record>("in");
    ctx.Emit("out", MakeRecord(ctx.key(), ValueOf(*in) * f_));
  }

 private:
  double f_;
  int64_t fail_on_;
  int64_t sleep_ms_;
};

class Add : public Node {
 public:
  static NodeSpec Spec() {
    return NodeSpec("testkit.add", "Adds two streams item by item (joined by key)")
        .Input("a", "record", PortKind::kStream, "first")
        .Input("b", "record", PortKind::kStream, "second")
        .Output("sum", "record", PortKind::kStream, "a + b");
  }
  explicit Add(const Params&) {}
  void Process(ProcessContext& ctx) override {
    auto a = ctx.Input<Record>("a");
    auto b = ctx.Input<Record>("b");
    if (a->id != ctx.key() || b->id != ctx.key()) throw Error("join paired different keys");
    ctx.Emit("sum", MakeRecord(ctx.key(), ValueOf(*a) + ValueOf(*b)));
  }
};

class Offset : public Node {
 public:
  static NodeSpec Spec() {
    return NodeSpec("testkit.offset", "Adds a single value to every item")
        .Input("offset", "record", PortKind::kSingle, "record whose v is added")
        .Input("in", "record", PortKind::kStream, "items")
        .Output("out", "record", PortKind::kStream, "items + offset");
  }
  explicit Offset(const Params&) {}
  void Process(ProcessContext& ctx) override {
    auto o = ctx.Input<Record>("offset");
    auto in = ctx.Input<Record>("in");
    ctx.Emit("out", MakeRecord(ctx.key(), ValueOf(*in) + ValueOf(*o)));
  }
};

class BatchSize : public Node {
 public:
  static NodeSpec Spec() {
    return NodeSpec("testkit.batch_size", "Replaces v by the size of the batch the item came in")
        .Input("in", "record", PortKind::kStream, "items")
        .Output("out", "record", PortKind::kStream, "v = batch size")
        .Param(ParamSpec::Int("batch_size", 4).Min(1).Doc("items per call"))
        .Batched("batch_size");
  }
  explicit BatchSize(const Params&) {}
  void Process(ProcessContext& ctx) override {
    for (size_t i = 0; i < ctx.size(); ++i) {
      (void)ctx.Input<Record>("in", i);
      ctx.Emit("out", MakeRecord(ctx.key(i), static_cast<double>(ctx.size())), i);
    }
  }
};

class Collect : public Node {
 public:
  static NodeSpec Spec() {
    return NodeSpec("testkit.collect", "Writes 'key value' lines (sorted) to a file at the end")
        .MultiInput("in", "record", PortKind::kStream, true, "items")
        .Param(ParamSpec::Required("path", ParamType::kPath).MarkOutput().Doc("output text file"))
        .Concurrent(Concurrency::kSerial)
        .AcceptsFailures();
  }
  explicit Collect(const Params& p) : path_(p.GetString("path")) {}
  void Process(ProcessContext& ctx) override {
    for (size_t i = 0; i < ctx.size(); ++i) {
      if (ctx.failed(i)) {
        lines_[ctx.key(i)] = "FAILED " + ctx.failure(i);
        continue;
      }
      double sum = 0;
      for (const auto& d : ctx.InputsOf("in", i)) sum += ValueOf(static_cast<const Record&>(*d));
      lines_[ctx.key(i)] = std::to_string(sum);
    }
  }
  void Finish(ProcessContext& ctx) override {
    std::ofstream out(path_);
    if (ctx.aborted()) out << "aborted\n";
    out << "max_alive " << g_max_alive.load() << "\n";
    int64_t usable = 0;
    for (const auto& [k, v] : lines_) {
      out << k << " " << v << "\n";
      if (v.rfind("FAILED", 0) != 0) ++usable;
    }
    ctx.ReportProduct({path_, static_cast<int64_t>(lines_.size()), usable, ctx.aborted(), ""});
  }

 private:
  std::string path_;
  std::map<int64_t, std::string> lines_;
};

void Register(Registry& r) {
  r.Add<Numbers>();
  r.Add<Scale>();
  r.Add<Add>();
  r.Add<Offset>();
  r.Add<BatchSize>();
  r.Add<Collect>();
}

}  // namespace testkit

CUBEFLOW_PLUGIN(testkit, "1.2.3", testkit::Register)
