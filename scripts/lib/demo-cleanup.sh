# Sourced by scripts/demo.sh and scripts/demo-vm.sh: one way a demo ends.
#
# demo_cleanup_on_exit WORK CMD...: on every exit (and INT, TERM), stop the
# agents, tear the lab down with CMD..., and remove WORK (it holds the lab's
# private key and state as well as the results) unless KEEP=1; the demo's
# exit status is kept.
demo_cleanup_on_exit() {
  demo_work=$1
  shift
  demo_lab_down=("$@")
  trap demo_cleanup EXIT INT TERM
}

demo_cleanup() {
  local status=$?
  echo "== tearing the lab down"
  vtcluster agents stop >/dev/null 2>&1 || true
  "${demo_lab_down[@]}" || true
  if [ "${KEEP:-0}" = 1 ]; then
    echo "demo: kept $demo_work (results, logs, and the lab's key and state): remove it with rm -rf $demo_work"
  else
    rm -rf -- "$demo_work"
    echo "demo: removed $demo_work (make demo KEEP=1 keeps the results and logs)"
  fi
  exit "$status"
}
