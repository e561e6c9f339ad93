#pragma once
/// \file cfitsio_error.hpp
/// \brief Error text for code that calls CFITSIO directly (plugins, the plot library).

#include <string>

namespace cubeflow::fits {

/// "CFITSIO status N: <text> (<first message on CFITSIO's error stack>)"; clears that stack.
std::string CfitsioErrorText(int status);

}  // namespace cubeflow::fits
