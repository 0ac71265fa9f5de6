// Replaced by the stage runner.
namespace vidfarm::models { void RunPlaceholder() {} }
