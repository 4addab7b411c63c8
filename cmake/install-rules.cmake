# Install rules and the package files of meterstream (fmt's CMakeLists.txt,
# cmake-init's install-rules.cmake).
#
# Installs the headers, the library, meterstreamTargets.cmake (namespace
# meterstream::), meterstreamConfig.cmake and meterstreamConfigVersion.cmake,
# and exports the same targets from the build tree, so that a consumer can use
# either `find_package(meterstream CONFIG)` with CMAKE_PREFIX_PATH set to an
# install prefix or with meterstream_DIR set to this build directory.

include_guard(GLOBAL)

include(CMakePackageConfigHelpers)
include(GNUInstallDirs)

set(MS_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/meterstream"
    CACHE STRING "Where meterstream's CMake package files are installed")
mark_as_advanced(MS_INSTALL_CMAKEDIR)

install(
  DIRECTORY "${PROJECT_SOURCE_DIR}/include/"
  DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
  COMPONENT meterstream_Development
  FILES_MATCHING
  PATTERN "*.hpp"
  PATTERN "*.h")

install(
  TARGETS meterstream
  EXPORT meterstreamTargets
  ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT meterstream_Development
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT meterstream_Runtime
          NAMELINK_COMPONENT meterstream_Development
  RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}" COMPONENT meterstream_Runtime
  INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")

# The config needs to know whether the private dependencies travel with the
# library (static) or are already linked into it (shared).
get_target_property(_ms_library_type meterstream TYPE)
if(_ms_library_type STREQUAL "STATIC_LIBRARY")
  set(MS_STATIC_LIBRARY ON)
else()
  set(MS_STATIC_LIBRARY OFF)
endif()

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/meterstreamConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/meterstreamConfig.cmake"
  INSTALL_DESTINATION "${MS_INSTALL_CMAKEDIR}")

# 0.x: a minor version may break the API, so only the same minor matches.
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/meterstreamConfigVersion.cmake"
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)

install(
  FILES "${PROJECT_BINARY_DIR}/meterstreamConfig.cmake"
        "${PROJECT_BINARY_DIR}/meterstreamConfigVersion.cmake"
  DESTINATION "${MS_INSTALL_CMAKEDIR}"
  COMPONENT meterstream_Development)

install(
  EXPORT meterstreamTargets
  NAMESPACE meterstream::
  DESTINATION "${MS_INSTALL_CMAKEDIR}"
  COMPONENT meterstream_Development)

# Build-tree export: meterstream_DIR=<build dir> works without installing.
export(
  EXPORT meterstreamTargets
  NAMESPACE meterstream::
  FILE "${PROJECT_BINARY_DIR}/meterstreamTargets.cmake")
