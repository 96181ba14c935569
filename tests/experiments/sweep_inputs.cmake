# Integration test: sweep points are keyed by the content of what they read. A kvsim sweep over
# two hardware files (copies of sim/data/hardware/a100-80gb.ini) and two eviction policies;
# editing one hardware file (PCIe host-to-device 27.92 -> 2 GB/s) must rerun exactly its two points, and
# `sweep --status` must name the file. Also: temporary folders of a killed sweep are removed on
# start, those of a live process are kept.
file(REMOVE_RECURSE ${DIR})
file(MAKE_DIRECTORY ${DIR})
file(READ ${SRC}/sim/data/hardware/a100-80gb.ini hw)
file(WRITE ${DIR}/hwA.ini "${hw}")
file(WRITE ${DIR}/hwB.ini "${hw}")
file(WRITE ${DIR}/sw.ini "[sweep]
name = hw
tool = kvsim
config = ${SRC}/experiments/cachedattention/base-micro.ini
args = -q -c {config} -o {out}
results = summary.csv
[vary]
sim.hardware = {sweepdir}/hwA.ini, {sweepdir}/hwB.ini
cache.eviction = lru, sa
")
macro(run_sweep)
  execute_process(COMMAND ${BIN}/sweep ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
endmacro()
run_sweep(-q -j 2 -o ${DIR}/res ${DIR}/sw.ini)
if(NOT rc EQUAL 0 OR NOT err MATCHES "4 points: 4 run, 0 already done, 0 failed")
  message(FATAL_ERROR "first run: rc ${rc}: ${err}")
endif()
file(GLOB points LIST_DIRECTORIES true ${DIR}/res/hw/hardware=*)
foreach(p ${points})
  file(READ ${p}/inputs.txt inputs)
  if(NOT inputs MATCHES "file [0-9a-f]+ [0-9]+ [^\n]*/hw[AB].ini" OR
     NOT inputs MATCHES "/models/llama-2-13b.ini" OR NOT inputs MATCHES "preload-1k100.csv" OR
     NOT inputs MATCHES "tool [0-9a-f]+ [0-9]+ [^\n]*/kvsim")
    message(FATAL_ERROR "${p}/inputs.txt lacks an input:\n${inputs}")
  endif()
endforeach()
run_sweep(-q -o ${DIR}/res ${DIR}/sw.ini)
if(NOT rc EQUAL 0 OR NOT err MATCHES "4 points: 0 run, 4 already done")
  message(FATAL_ERROR "unchanged resume: rc ${rc}: ${err}")
endif()
# Edit hwA: its points are stale, hwB's are not.
string(REPLACE "pcie_h2d_gbs = 27.92" "pcie_h2d_gbs = 2.0" hw2 "${hw}")
if(hw2 STREQUAL hw)
  message(FATAL_ERROR "the hardware file no longer has 'pcie_h2d_gbs = 27.92'")
endif()
file(WRITE ${DIR}/hwA.ini "${hw2}")
run_sweep(--status -o ${DIR}/res ${DIR}/sw.ini)
if(NOT rc EQUAL 0 OR NOT out MATCHES "4 points: 2 done, 2 stale, 0 failed, 0 not run")
  message(FATAL_ERROR "status: rc ${rc}: ${out} ${err}")
endif()
string(REGEX MATCHALL "[^\n]*stale[^\n]*" stale_lines "${out}")
foreach(l ${stale_lines})
  if(l MATCHES "^hardware=[^ ]*hwB" OR (NOT l MATCHES "points:" AND NOT l MATCHES "input [^ ]*/hwA.ini: changed"))
    message(FATAL_ERROR "status line does not name hwA.ini as the change: ${l}")
  endif()
endforeach()
file(MAKE_DIRECTORY ${DIR}/res/hw/.gone.tmp-999999999-0)
file(MAKE_DIRECTORY ${DIR}/res/hw/.live.tmp-1-0)
run_sweep(-o ${DIR}/res ${DIR}/sw.ini)
if(NOT rc EQUAL 0 OR NOT err MATCHES "4 points: 2 run, 2 already done, 0 failed")
  message(FATAL_ERROR "rerun after the hardware edit: rc ${rc}: ${err}")
endif()
if(NOT err MATCHES "hwA.ini: changed" OR err MATCHES "rerun [^\n]*hwB")
  message(FATAL_ERROR "rerun messages: ${err}")
endif()
if(EXISTS ${DIR}/res/hw/.gone.tmp-999999999-0 OR NOT EXISTS ${DIR}/res/hw/.live.tmp-1-0)
  message(FATAL_ERROR "stale temporary folders: the dead one must go, the live one stay")
endif()
# The reruns used the new file: loads from host memory are slower, so the result differs.
file(GLOB a_lru ${DIR}/res/hw/hardware=*hwA.ini_eviction=lru/summary.csv)
file(GLOB a_old ${DIR}/res/hw/hardware=*hwA.ini_eviction=lru.stale-*/summary.csv)
file(READ ${a_lru} new_summary)
file(READ ${a_old} old_summary)
if(new_summary STREQUAL old_summary)
  message(FATAL_ERROR "the rerun gave the same summary as before the edit")
endif()
run_sweep(--status -o ${DIR}/res ${DIR}/sw.ini)
if(NOT out MATCHES "4 points: 4 done, 0 stale")
  message(FATAL_ERROR "status after the rerun: ${out}")
endif()
