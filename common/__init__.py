"""The shared base: what the counter firmware, the central service and the technician's tool all use.

Layers, bottom to top (tests/test_layers.py holds the house to them):

    protocol/       the wire contract, stdlib only
    common/         this package: the config schema engine, atomic file writes, the common error
                    types, the calendar (days, weeks, months in the site's time zone), the paho
                    client factory, the CLI runner, and the counter's config file format
                    (written by provisioning/, read by device/)
    device/ broker/ provisioning/   side by side; each may use common/ and protocol/, never each other
    hailong/        the `hailong` command and the demo; imported by nothing of ours

`common` imports nothing of ours but `protocol`, and heavy libraries (paho) only inside the
functions that need them.
"""
