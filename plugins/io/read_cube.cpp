// io.read_cube
#include <sstream>

#include "io_nodes.hpp"

namespace cubeflow::io {

NodeSpec ReadCubeNode::Spec() {
  return NodeSpec("io.read_cube", "Read a spectral cube (MUSE-style FITS: DATA, STAT, DQ extensions)")
      .Describe(
          "Reads the flux (and variance / data-quality, when present) of a FITS cube, only the "
          "channels inside [wave_min, wave_max]. Handles CD or CDELT/PC keywords, CTYPE3 AWAV/WAVE "
          "(air/vacuum) and -LOG axes; single-HDU cubes are read from the primary HDU.")
      .Output("cube", Cube::kType, PortKind::kSingle, "the cube (flux, variance, mask, wavelength axis, WCS)")
      .Param(ParamSpec::Required("path", ParamType::kPath).Doc("FITS cube to read"))
      .Param(ParamSpec::Double("wave_min", 0).Min(0).Unit("Angstrom").Doc("first wavelength to read (0 = start)"))
      .Param(ParamSpec::Double("wave_max", 0).Min(0).Unit("Angstrom").Doc("last wavelength to read (0 = end)"))
      .Param(ParamSpec::String("data_hdu", "DATA").Doc("extension holding the flux"))
      .Param(ParamSpec::String("stat_hdu", "STAT").Doc("extension holding the variance (\"\" = none)"))
      .Param(ParamSpec::Bool("require_stat", false).Doc("fail if the variance extension is missing"))
      .Concurrent(Concurrency::kSerial);
}

ReadCubeNode::ReadCubeNode(const Params& p) : path_(p.GetString("path")) {
  options_.wave_min = p.GetDouble("wave_min");
  options_.wave_max = p.GetDouble("wave_max");
  options_.data_hdu = p.GetString("data_hdu");
  options_.stat_hdu = p.GetString("stat_hdu");
  options_.require_stat = p.GetBool("require_stat");
}

void ReadCubeNode::Process(ProcessContext& ctx) {
  std::shared_ptr<Cube> cube = fits::ReadCube(path_, options_).ValueOrThrow();
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
