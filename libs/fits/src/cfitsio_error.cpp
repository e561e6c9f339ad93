// cubeflow/fits/cfitsio_error.hpp: the public face of internal::CfitsioError.
#include "cubeflow/fits/cfitsio_error.hpp"

#include "fits_util.hpp"

namespace cubeflow::fits {

std::string CfitsioErrorText(int status) { return internal::CfitsioError(status); }

}  // namespace cubeflow::fits
