"""Fleet learning: many devices improve one model together through a Flower server.

Only the int8 sparse update travels: each round every chosen device trains K steps at batch 1
with the device's arithmetic (simulator or the compiled step on QEMU) from the global trained
rows the server sent, and returns its trained rows (kept channels' int8 weights, int32
biases); the server checks every update, aggregates the accepted ones in real units and
requantizes with the device's rounding. Frozen weights never move and never travel.

  partition.py   Dirichlet non-IID split of a training set over the devices
  update.py      the manifest of trained rows (the wire format), real units, bytes
  validate.py    the server's check of every update (named reasons)
  aggregate.py   fedavg / fedavgm / fedmedian / trimmed-mean, requantization
  checkpoint.py  the atomic round checkpoint (resume after a server restart)
  device.py      simulated and QEMU devices; sample order and seeds per (device, round)
  faults.py      misbehaving devices on purpose (dropout, malformed updates)
  setup.py       the run's fixed parts, prepared once, read by every device process
  evaluate.py    accuracy on the union test set
  server.py      the Flower Strategy;  client.py  the Flower client
  run.py         serve (simulation engine or gRPC over loopback) and run_device

The public entry points are the API's ``microtrain.run_fleet`` and ``microtrain.join_fleet``
(``api/fleet.py``), which resolve model, head and scheme as every verb does.
"""

from microtrain.fleet.setup import FleetSpec

__all__ = ["FleetSpec"]
