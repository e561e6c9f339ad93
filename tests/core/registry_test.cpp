#include "cubeflow/registry.hpp"

#include <gtest/gtest.h>

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
