// custom.snr_mask: an S/N map in, a quality mask out, once per run.
#include "snr_mask.hpp"

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>

#include <cubeflow/data.hpp>
#include <cubeflow/strings.hpp>

namespace custom {

using namespace cubeflow;

NodeSpec SnrMaskNode::Spec() {
  return NodeSpec("custom.snr_mask", "Mask spaxels whose S/N is below a threshold")
      .Describe("Reads an S/N map (e.g. SNR of spectral.snr_map) and writes an integer mask map "
                "with cubeflow's quality bits (docs/products.md): NOCOV (1) where the S/N is not "
                "finite, LOWSNR (2) where it is below `threshold`, 0 elsewhere. The mask keeps "
                "the grid and WCS of the S/N map and names it as its value map.")
      .Input("snr", Map::kType, PortKind::kSingle, "S/N map")
      .Output("mask", Map::kType, PortKind::kSingle, "mask map named by `name`, same grid and WCS as the input")
      .Param(&SnrMaskOptions::threshold, "threshold", "minimum S/N of a good spaxel", AtLeast{0})
      .Param(&SnrMaskOptions::name, "name", "EXTNAME of the mask in products")
      .Check<SnrMaskOptions>([](const SnrMaskOptions& o, CheckReport& r) {
        // Checks that need more than one parameter, or more than a range, go here: they run
        // in `cubeflow validate` (reported at the parameter's line) and before the node is built.
        if (o.name.empty()) r.Error("name", "must not be empty: it is the EXTNAME of the mask in products");
        else if (o.name.size() > 68) r.Error("name", "is " + std::to_string(o.name.size()) + " characters long; a FITS EXTNAME holds at most 68");
      });
}

void SnrMaskNode::Process(ProcessContext& ctx) {
  auto snr = ctx.Input<Map>("snr");  // throws, naming the port, if absent or not a map
  auto mask = std::make_shared<Map>();
  mask->name = options_.name;
  mask->kind = "mask";  // written as an int32 QUALITY-type extension (QBITn header cards)
  mask->companion_of = snr->name;
  mask->nx = snr->nx;
  mask->ny = snr->ny;
  mask->nplanes = snr->nplanes;
  mask->plane_names = snr->plane_names;
  mask->wcs = snr->wcs;
  mask->header["SNRTHRES"] = Num(options_.threshold);
  mask->data.resize(snr->data.size());
  int64_t low = 0, missing = 0;
  for (size_t i = 0; i < snr->data.size(); ++i) {
    const double v = snr->data[i];
    uint32_t bits = 0;
    if (!std::isfinite(v)) {
      bits = kQualNoCoverage;
      ++missing;
    } else if (v < options_.threshold) {
      bits = kQualLowSnr;
      ++low;
    }
    mask->data[i] = bits;
  }
  ctx.Log(LogLevel::kInfo, std::to_string(low) + " of " + std::to_string(snr->data.size()) + " spaxels below S/N " +
                               Num(options_.threshold) + ", " + std::to_string(missing) + " without S/N");
  ctx.Emit("mask", mask);
}

}  // namespace custom
