"""The demo plant: a tenant with products, an asset tree and simulated machines that publish
over MQTT with the ThingsBoard device API, exactly as real devices would."""
