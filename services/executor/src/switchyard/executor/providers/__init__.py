"""Provider adapters (one folder each) behind one port (`base.Provider`)."""
