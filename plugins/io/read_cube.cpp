// io.read_cube
#include <sstream>

#include "cubeflow/strings.hpp"
#include "io_nodes.hpp"

namespace cubeflow::io {

NodeSpec ReadCubeNode::Spec() {
  return NodeSpec("io.read_cube", "Read a spectral cube (MUSE-style FITS: DATA, STAT, DQ extensions)")
      .Describe(
          "Reads the flux (and variance / data-quality, when present) of a FITS cube, only the "
          "channels inside [wave_min, wave_max]. Handles CD or CDELT/PC keywords, CTYPE3 AWAV/WAVE "
          "(air/vacuum) and -LOG axes; single-HDU cubes are read from the primary HDU.")
      .Output("cube", Cube::kType, PortKind::kSingle, "the cube (flux, variance, mask, wavelength axis, WCS)")
      .Param(&Options::path, "path", "FITS cube to read", Required{})
      .Param(&Options::wave_min, "wave_min", "first wavelength to read (0 = start)", Unit{"Angstrom"}, AtLeast{0})
      .Param(&Options::wave_max, "wave_max", "last wavelength to read (0 = end)", Unit{"Angstrom"}, AtLeast{0})
      .Param(&Options::data_hdu, "data_hdu", "extension holding the flux")
      .Param(&Options::stat_hdu, "stat_hdu", "extension holding the variance (\"\" = none)")
      .Param(&Options::require_stat, "require_stat", "fail if the variance extension is missing")
      .Check<Options>([](const Options& o, CheckReport& r) {
        if (o.wave_min > 0 && o.wave_max > 0 && o.wave_min >= o.wave_max)
          r.Error("wave_max", "must be above wave_min (" + Num(o.wave_min) + " Angstrom), got " + Num(o.wave_max) +
                                  ": the window [wave_min, wave_max] is empty; set wave_min < wave_max (0 = no limit)");
      })
      .Concurrent(Concurrency::kSerial);
}

ReadCubeNode::ReadCubeNode(const Options& o) : path_(o.path.string()) {
  options_.wave_min = o.wave_min;
  options_.wave_max = o.wave_max;
  options_.data_hdu = o.data_hdu;
  options_.stat_hdu = o.stat_hdu;
  options_.require_stat = o.require_stat;
}

void ReadCubeNode::Process(ProcessContext& ctx) {
  std::vector<std::string> warnings;
  std::shared_ptr<Cube> cube = fits::ReadCube(path_, options_, &warnings).ValueOrThrow();
  for (const auto& w : warnings) ctx.Log(LogLevel::kWarn, w);
  std::ostringstream msg;
  msg << "read " << path_ << ": " << cube->nx << " x " << cube->ny << " x " << cube->nwave << " ("
      << cube->wave.At(0) << " - " << cube->wave.At(cube->nwave - 1) << " Angstrom, "
      << (cube->variance.empty() ? "no variance" : "with variance") << ")";
  ctx.Log(LogLevel::kInfo, msg.str());
  if (cube->variance.empty() && !options_.stat_hdu.empty())
    ctx.Log(LogLevel::kWarn, "no variance extension '" + options_.stat_hdu + "' in " + path_);
  ctx.Emit("cube", std::move(cube));
}

}  // namespace cubeflow::io
