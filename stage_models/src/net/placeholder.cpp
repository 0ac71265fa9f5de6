namespace vidfarm::models { void NetPlaceholder() {} }
