// custom.snr_mask: turns an S/N map into a quality mask (1 = below threshold, 2 = no data).
// An example of a plugin written outside the cubeflow tree against the installed headers.
#include <cmath>

#include <cubeflow/plugin.hpp>

namespace custom {
namespace {

using namespace cubeflow;

class SnrMask final : public Node {
 public:
  static NodeSpec Spec() {
    return NodeSpec("custom.snr_mask", "Mask spaxels whose S/N is below a threshold")
        .Describe("Reads an S/N map (e.g. from spectral.snr_map) and writes an integer mask map: "
                  "bit 0 set where S/N < threshold, bit 1 where the S/N is not finite.")
        .Input("snr", "map", PortKind::kSingle, "S/N map")
        .Output("mask", "map", PortKind::kSingle, "mask map named by 'name', same WCS as the input")
        .Param(ParamSpec::Double("threshold", 3.0).Min(0).Doc("minimum S/N of a good spaxel"))
        .Param(ParamSpec::String("name", "SNR_MASK").Doc("EXTNAME of the mask in products"));
  }
  explicit SnrMask(const Params& p) : threshold_(p.GetDouble("threshold")), name_(p.GetString("name")) {}

  void Process(ProcessContext& ctx) override {
    auto snr = ctx.Input<Map>("snr");
    auto mask = std::make_shared<Map>();
    mask->name = name_;
    mask->kind = "mask";
    mask->companion_of = snr->name;
    mask->nx = snr->nx;
    mask->ny = snr->ny;
    mask->wcs = snr->wcs;
    mask->header["MASKBIT0"] = "S/N below threshold";
    mask->header["MASKBIT1"] = "S/N not finite";
    mask->data.resize(snr->data.size());
    int64_t low = 0;
    for (size_t i = 0; i < snr->data.size(); ++i) {
      const double v = snr->data[i];
      mask->data[i] = !std::isfinite(v) ? 2.0 : (v < threshold_ ? 1.0 : 0.0);
      low += mask->data[i] != 0.0;
    }
    ctx.Log(LogLevel::kInfo, std::to_string(low) + " of " + std::to_string(snr->data.size()) + " spaxels masked");
    ctx.Emit("mask", mask);
  }

 private:
  double threshold_;
  std::string name_;
};

void Register(Registry& r) { r.Add<SnrMask>(); }

}  // namespace
}  // namespace custom

CUBEFLOW_PLUGIN(custom, "1.0.0", custom::Register)
