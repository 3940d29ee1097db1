"""The Twilio channel module (SMS, WhatsApp messages and calls.): `module.MODULE` implements the channel contract."""
