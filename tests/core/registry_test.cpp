#include "cubeflow/registry.hpp"

#include <gtest/gtest.h>

#include "cubeflow/testing/fake_context.hpp"

namespace cubeflow {
namespace {

class Dummy : public Node {
 public:
  static NodeSpec Spec() { return NodeSpec("demo.dummy", "does nothing").Param(ParamSpec::Int("batch", 2)); }
  explicit Dummy(const Params&) {}
  void Process(ProcessContext&) override {}
};

TEST(Registry, AddsAndFindsWithSuggestions) {
  Registry r;
  r.Add<Dummy>();
  ASSERT_NE(r.Find("demo.dummy"), nullptr);
  EXPECT_EQ(r.Find("demo.dumy"), nullptr);
  EXPECT_EQ(r.Closest("demo.dumy"), "demo.dummy");
  EXPECT_EQ(r.Closest("dummy"), "demo.dummy");
  EXPECT_EQ(r.Closest("completely.unrelated_name"), "");
}

TEST(Registry, RejectsDuplicatesAndBadNames) {
  Registry r;
  r.Add<Dummy>();
  EXPECT_THROW(r.Add<Dummy>(), Error);
  NodeSpec bad("NoDot", "x");
  bad.Factory([](const Params&) { return std::unique_ptr<Node>(); });
  try {
    r.Add(bad);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("plugin.node"), std::string::npos);
  }
  NodeSpec batched("demo.b", "x");
  batched.Batched("nope").Factory([](const Params&) { return std::unique_ptr<Node>(); });
  EXPECT_THROW(r.Add(batched), Error);
}

TEST(Registry, RefusesNodeTypesOutsideThePluginsName) {
  Registry r;
  r.SetCurrentOrigin({"mine", "1.0", "/x/mine.so"});
  NodeSpec other("other.scale", "x");
  other.Factory([](const Params&) { return std::unique_ptr<Node>(); });
  try {
    r.Add(other);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("plugin 'mine' registers node type 'other.scale'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'mine.<node>'"), std::string::npos) << e.what();
  }
  EXPECT_EQ(r.Find("other.scale"), nullptr);
  NodeSpec mine("mine.scale", "x");
  mine.Factory([](const Params&) { return std::unique_ptr<Node>(); });
  EXPECT_NO_THROW(r.Add(mine));
  // "mine" is a prefix of "minefield" but not its plugin name.
  NodeSpec near("minefield.scale", "x");
  near.Factory([](const Params&) { return std::unique_ptr<Node>(); });
  EXPECT_THROW(r.Add(near), Error);
}

// A node type whose parameters are declared once, bound to an options struct.
struct BoundOptions {
  double factor = 2.5;
  int64_t count = 7;
  bool on = true;
  std::string mode = "a";
  std::filesystem::path file = "in.fits";
  std::vector<double> edges = {1.0, 2.0};
  ModelRef model = ModelRef::Parse("cnn_builtin");
};

class Bound : public Node {
 public:
  using Options = BoundOptions;
  static NodeSpec Spec() {
    return NodeSpec("demo.bound", "bound parameters")
        .Param(&BoundOptions::factor, "factor", "a factor", Unit{"km/s"}, InRange{0, 10})
        .Param(&BoundOptions::count, "count", "a count", AtLeast{1})
        .Param(&BoundOptions::on, "on", "a switch")
        .Param(&BoundOptions::mode, "mode", "a mode", OneOf{{"a", "b"}})
        .Param(&BoundOptions::file, "file", "a file")
        .Param(&BoundOptions::edges, "edges", "edges")
        .Param(&BoundOptions::model, "model", "a model")
        .Check<BoundOptions>([](const BoundOptions& o, CheckReport& r) {
          if (o.count > 100 && o.factor > 5) r.Error("count", "too many with a large factor");
        });
  }
  explicit Bound(const BoundOptions& o) : options(o) {}
  void Process(ProcessContext&) override {}
  BoundOptions options;
};

TEST(ParamBinding, TypesAndDefaultsComeFromTheOptionsStruct) {
  const NodeSpec s = Bound::Spec();
  ASSERT_EQ(s.params().size(), 7u);
  EXPECT_EQ(s.FindParam("factor")->type(), ParamType::kDouble);
  EXPECT_EQ(FormatValue(s.FindParam("factor")->default_value()), "2.5");
  EXPECT_EQ(s.FindParam("factor")->unit(), "km/s");
  EXPECT_EQ(*s.FindParam("factor")->max(), 10.0);
  EXPECT_EQ(s.FindParam("count")->type(), ParamType::kInt);
  EXPECT_EQ(FormatValue(s.FindParam("count")->default_value()), "7");
  EXPECT_EQ(s.FindParam("on")->type(), ParamType::kBool);
  EXPECT_EQ(s.FindParam("mode")->choices(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(s.FindParam("file")->type(), ParamType::kPath);
  EXPECT_EQ(FormatValue(s.FindParam("file")->default_value()), "in.fits");
  EXPECT_EQ(s.FindParam("edges")->type(), ParamType::kDoubleList);
  EXPECT_EQ(s.FindParam("model")->type(), ParamType::kModel);
  EXPECT_EQ(FormatValue(s.FindParam("model")->default_value()), "cnn_builtin");
}

TEST(ParamBinding, FactoryBindsOptionsAndRunsTheChecks) {
  auto node = testing::MakeNode<Bound>({{"factor", 4.0}, {"count", int64_t{3}}, {"file", std::string("/d/x.fits")},
                                        {"model", std::string("/m/my.pt")}, {"edges", std::vector<double>{5.0}}});
  const auto& o = static_cast<Bound&>(*node).options;
  EXPECT_DOUBLE_EQ(o.factor, 4.0);
  EXPECT_EQ(o.count, 3);
  EXPECT_TRUE(o.on);  // default kept
  EXPECT_EQ(o.file, std::filesystem::path("/d/x.fits"));
  EXPECT_EQ(o.model.kind, ModelRef::Kind::kPath);
  EXPECT_EQ(o.model.text, "/m/my.pt");
  EXPECT_EQ(o.edges, std::vector<double>{5.0});
  try {
    testing::MakeNode<Bound>({{"factor", 6.0}, {"count", int64_t{200}}});
    FAIL() << "the check should refuse the options";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "count: too many with a large factor");
  }
}

TEST(ParamBinding, RegistryRefusesParametersBoundToTwoStructs) {
  struct Other {
    double x = 1;
  };
  NodeSpec s("demo.mixed", "x");
  s.Param(&BoundOptions::factor, "factor", "a").Param(&Other::x, "x", "b");
  s.Factory([](const Params&) { return std::unique_ptr<Node>(); });
  Registry r;
  EXPECT_THROW(r.Add(s), Error);
}

TEST(ModelRefs, KindFollowsFromTheTextAlone) {
  EXPECT_EQ(ModelRef::Parse("cnn_emiles").kind, ModelRef::Kind::kShipped);
  EXPECT_EQ(ModelRef::Parse("cnn-2").kind, ModelRef::Kind::kShipped);
  EXPECT_EQ(ModelRef::Parse("cnn_builtin.pt").kind, ModelRef::Kind::kPath);
  EXPECT_EQ(ModelRef::Parse("./cnn_builtin").kind, ModelRef::Kind::kPath);
  EXPECT_EQ(ModelRef::Parse("/abs/model.pt").kind, ModelRef::Kind::kPath);
  EXPECT_EQ(ModelRef::Parse("models/x.pt").File(), "models/x.pt");
  EXPECT_EQ(ModelRef::Parse("no_such_shipped_model").File(), "");
}

TEST(Params, TypedAccessChecksTypes) {
  Params p({{"a", int64_t{3}}, {"b", 2.5}, {"s", std::string("x")}});
  EXPECT_EQ(p.GetInt("a"), 3);
  EXPECT_DOUBLE_EQ(p.GetDouble("a"), 3.0);  // ints widen to double
  EXPECT_DOUBLE_EQ(p.GetDouble("b"), 2.5);
  EXPECT_THROW(p.GetInt("b"), Error);
  EXPECT_THROW(p.GetString("missing"), Error);
  EXPECT_EQ(FormatValue(Value(std::vector<double>{1, 2.5})), "[1, 2.5]");
}

TEST(EditDistance, Basic) {
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3u);
  EXPECT_EQ(EditDistance("", "abc"), 3u);
  EXPECT_EQ(EditDistance("same", "same"), 0u);
}

}  // namespace
}  // namespace cubeflow
