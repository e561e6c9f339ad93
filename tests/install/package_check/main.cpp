// Appended to the generated list of #includes: one call into each library, so that the
// executable needs every one of them at link and at run time.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

int main() {
  cubeflow::Registry registry;                                          // core
  const double vac = cubeflow::spectral::AirToVacuum(5000.0);          // spectral
  const std::string real = cubeflow::fits::FitsReal(1.5);              // fits
  const double noise = cubeflow::binning::BinNoise(4.0, 1, 0.0);       // binning
  const int age_bin = cubeflow::sim::AgeBinOf(1.0);                    // sim
  const uint8_t bytes[] = {'a'};
  const uint32_t crc = cubeflow::plot::Crc32(bytes, 1);                // plot
  if (!(std::abs(vac - 5001.39) < 0.01) || real.empty() || !(noise > 0) || age_bin < 0 || crc == 0) return 1;
  std::printf("cubeflow %s package ok (%zu node types in an empty registry)\n", cubeflow::kVersion,
              registry.All().size());
  return 0;
}
