# One VM as a Nomad batch task: `qmpkit run` is the task's process. Nomad sends kill_signal
# (SIGTERM) to stop it; qmpkit shuts the guest down within --shutdown-timeout and exits with how
# the VM ended (0 powered off, 5 qemu crashed or was killed, 6 forced), which Nomad reports as
# the task's exit code. qmpkit and qemu are installed on the client (the qmpkit Debian
# package); raw_exec runs them there. See examples/scheduler/README.md.
job "qmpkit-tiny" {
  type = "batch"

  group "vm" {
    restart {
      attempts = 0
      mode     = "fail"
    }

    task "run" {
      driver = "raw_exec"

      config {
        command = "qmpkit"
        args    = ["run", "local/tiny.yaml", "--shutdown-timeout", "60"]
      }

      env {
        # One state root per allocation: tasks on one client do not see each other's VMs.
        QMPKIT_STATE_DIR = "${NOMAD_ALLOC_DIR}/qmpkit"
      }

      kill_signal  = "SIGTERM"
      kill_timeout = "90s" # longer than --shutdown-timeout

      template {
        destination = "local/tiny.yaml"
        data        = <<-YAML
          name: tiny
          machine: pc
          accel: auto
          cpus: 1
          memory: 256M
          kernel: /srv/qmpkit/guest/vmlinuz
          initrd: /srv/qmpkit/guest/initramfs.img
          append: "console=ttyS0 panic=-1"
          command_channel: true
          disks:
            - {name: system, file: {{ env "NOMAD_ALLOC_DIR" }}/tiny-system.qcow2, size: 64M}
        YAML
      }

      resources {
        cpu    = 1000 # MHz
        memory = 768  # MiB: the guest's 256 MiB RAM file in /dev/shm, plus qemu
      }

      # Readiness: the VM runs. Script checks run through Consul.
      service {
        name     = "qmpkit-tiny"
        provider = "consul"
        check {
          type     = "script"
          command  = "sh"
          args     = ["-c", "qmpkit --json status tiny | grep -q '\"state\": \"running\"'"]
          interval = "10s"
          timeout  = "5s"
        }
      }
    }
  }
}
