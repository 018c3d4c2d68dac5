"""The distill compiler: Distillfile -> Spec -> Plan. Imports no torch."""
