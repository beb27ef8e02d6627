"""What learns from traffic: event store, Label Studio sync, rankings → preference pairs."""
