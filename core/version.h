// Ferry's version, recorded in manifests and printed by --version.
// Keep in step with project(VERSION) in the top-level CMakeLists.txt.
#pragma once

namespace ferry {
inline constexpr char kFerryVersion[] = "0.1.0";
}  // namespace ferry
